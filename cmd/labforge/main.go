// Command labforge builds lab hosts as VM disks, boots them through
// libvirt and verifies them over SSH.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Ctrl-C cancels the context; every long call cleans up behind it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCmd().ExecuteContext(ctx)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "labforge:", err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// exitError ends the program with a code after the command printed its
// own account (a failed verify prints its table, not an error line).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }
