package verify

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	var stdout bytes.Buffer
	code, stderr, err := l.Stream(ctx, cmd, &stdout)
	res := Result{Stdout: stdout.String(), Stderr: stderr}
	if err == nil {
		res.ExitCode = code
	}
	return res, err
}

// Stream runs cmd with the shell, its stdout going to stdout as it comes.
func (l Local) Stream(ctx context.Context, cmd string, stdout io.Writer) (int, string, error) {
	shell := l.Shell
	if shell == "" {
		shell = "sh"
	}
	c := exec.CommandContext(ctx, shell, "-c", cmd)
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = stdout, &stderr
	c.WaitDelay = time.Second // background children (setsid -f) may hold the pipes
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, stderr.String(), ctx.Err()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String(), nil
	}
	return 0, stderr.String(), err
}
