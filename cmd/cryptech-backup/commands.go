package main

// commands lists the subcommands in the order --help shows them.
func commands() []*command {
	return []*command{
		initCommand,
		keygenCommand,
		listCommand,
		pubkeyCommand,
		setupCommand,
		exportCommand,
		importCommand,
		signCommand,
		verifyCommand,
		hashsigCommand,
		hashsigHistoryCommand,
		serveCommand,
		demoCommand,
	}
}
