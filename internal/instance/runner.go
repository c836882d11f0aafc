package instance

import (
	"context"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/verify"
)

// RootRunner runs verify checks as root on the guest: labforge logs in as
// the lab's user, who may sudo without a password.
type RootRunner struct{ Client *sshx.Client }

// Run runs cmd through sudo.
func (r RootRunner) Run(ctx context.Context, cmd string) (verify.Result, error) {
	res, err := r.Client.Run(ctx, "sudo -n sh -c "+runx.Quote(cmd))
	return verify.Result{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, err
}
