// Command cryptech-backup moves private keys between HSMs without their ever
// being in the clear, following the Cryptech HSM's cryptech_backup: setup on
// the destination, export on the source, import on the destination. It also
// creates and drives emulated HSMs, and runs the whole transfer as a demo.
//
// Exit status: 0 done; 1 the operation failed (imports and exports are all or
// nothing, so nothing changed, unless the connection to a daemon was lost
// and the line says so) or a signature did not verify; 2 usage error.
package main

import (
	"os"
)

func main() {
	ignoreSIGPIPE()
	os.Exit(run(os.Args[1:], newEnv()))
}
