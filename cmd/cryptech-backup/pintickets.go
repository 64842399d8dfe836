package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// pinTicketsEnv turns PIN tickets off ("off") or puts them in a directory
// of the operator's choosing; see docs/pin-tickets.md.
const pinTicketsEnv = "CRYPTECH_PIN_TICKETS"

// pinTickets is where the emulated HSMs this run opens keep their PIN
// tickets, which spare the next command of this boot the PIN's PBKDF2:
// $CRYPTECH_PIN_TICKETS (off: none), else cryptech-backup in the user's
// runtime directory ($XDG_RUNTIME_DIR, else /run/user/UID if it exists: a
// tmpfs of the user's alone, emptied at logout or reboot), else none.
func (e *env) pinTickets() *hsm.PINTickets {
	switch v := e.getenv(pinTicketsEnv); v {
	case "off":
		return nil
	case "":
	default:
		return &hsm.PINTickets{Dir: v}
	}
	run := e.getenv("XDG_RUNTIME_DIR")
	if run == "" {
		run = fmt.Sprintf("/run/user/%d", os.Geteuid())
		if fi, err := os.Stat(run); err != nil || !fi.IsDir() {
			return nil
		}
	}
	return &hsm.PINTickets{Dir: filepath.Join(run, "cryptech-backup")}
}
