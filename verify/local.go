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
	Agent []byte // the guest agent's program, for batches; none when nil
}

func (l Local) shell() string {
	if l.Shell == "" {
		return "sh"
	}
	return l.Shell
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
	c := exec.CommandContext(ctx, l.shell(), "-c", cmd)
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = stdout, &stderr
	c.WaitDelay = time.Second // background children (setsid -f) may hold the pipes
	code, err := exitOf(ctx, c.Run())
	return code, stderr.String(), err
}

// exitOf is a finished command's exit status; an error only when it could
// not run or ctx ended.
func exitOf(ctx context.Context, err error) (int, error) {
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, ctx.Err()
	case errors.As(err, &exit):
		return exit.ExitCode(), nil
	case err != nil:
		return -1, err
	}
	return 0, nil
}

// AgentProgram is the guest agent Local was given, if any: the engine's
// tests run batches through it on this machine.
func (l Local) AgentProgram() []byte { return l.Agent }

// StartPiped starts cmd with the shell, its stdin and stdout as pipes.
func (l Local) StartPiped(ctx context.Context, cmd string) (io.WriteCloser, io.Reader, func() (int, string, error), error) {
	c := exec.CommandContext(ctx, l.shell(), "-c", cmd)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	c.WaitDelay = time.Second
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := c.StdoutPipe()
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		stdin.Close()
		return nil, nil, nil, err
	}
	wait := func() (int, string, error) {
		err := c.Wait()
		code, err := exitOf(ctx, err)
		return code, stderr.String(), err
	}
	return stdin, stdout, wait, nil
}
