// Package runx runs host commands with their output kept in a log, and
// errors that quote the tail of that output.
package runx

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
)

// Run runs name with args, copying its combined output to log (if not nil).
// The error names the command and quotes the last lines it printed.
func Run(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
	return RunIn(ctx, "", log, env, name, args...)
}

// RunIn is Run with dir as the working directory.
func RunIn(ctx context.Context, dir string, log io.Writer, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var tail Tail
	var w io.Writer = &tail
	if log != nil {
		// A log that cannot be written (a full disk) must not kill the
		// command with SIGPIPE and hide its own error.
		w = io.MultiWriter(forgiving{log}, &tail)
		fmt.Fprintf(log, "$ %s %s\n", name, strings.Join(args, " "))
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(cmd.Environ(), env...)
	// Own process group, so that Ctrl-C reaches labforge first and it
	// decides how children stop (CommandContext kills them on cancel).
	// Pdeathsig: a labforge killed with -9 takes its children with it, so
	// none goes on writing into a tree the next run is cleaning.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(short(args), " "), err, tail.String())
	}
	return nil
}

func short(args []string) []string {
	if len(args) > 8 {
		return append(args[:8:8], "…")
	}
	return args
}

// Tail keeps the last few lines written to it, to quote in an error.
type Tail struct{ b []byte }

const tailMax = 2048

func (t *Tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

func (t *Tail) String() string {
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// forgiving writes to w but never fails.
type forgiving struct{ w io.Writer }

func (f forgiving) Write(p []byte) (int, error) {
	_, _ = f.w.Write(p)
	return len(p), nil
}

// Quote quotes s as one word for a POSIX shell.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// QuoteAll quotes each word and joins them with spaces.
func QuoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
