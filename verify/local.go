package verify

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"time"
)

// Local runs checks on this machine: the student's in-guest `labs`
// command, and the engine's own tests against real tools and state.
type Local struct {
	Shell string // sh when empty
}

// Run runs cmd with the shell; a non-zero exit is a result, not an error.
func (l Local) Run(ctx context.Context, cmd string) (Result, error) {
	shell := l.Shell
	if shell == "" {
		shell = "sh"
	}
	c := exec.CommandContext(ctx, shell, "-c", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = time.Second // background children (setsid -f) may hold the pipes
	err := c.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
		return res, nil
	}
	return res, err
}
