package instance

import (
	"context"
	"strings"

	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/verify"
)

// RootRunner runs verify checks as root on the guest: labforge logs in as
// the lab's user, who may sudo without a password.
type RootRunner struct{ Client *sshx.Client }

// Run runs cmd through sudo.
func (r RootRunner) Run(ctx context.Context, cmd string) (verify.Result, error) {
	res, err := r.Client.Run(ctx, "sudo -n sh -c "+shellQuote(cmd))
	return verify.Result{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
