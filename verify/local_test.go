package verify

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// localRunner runs commands with this machine's bash, so the checks in the
// tests exercise real tools (stat, ss, sysctl, dpkg-query) and real state.
type localRunner struct{}

func (localRunner) Run(ctx context.Context, cmd string) (Result, error) {
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = time.Second // don't wait on grandchildren holding the pipes
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

// runYAML parses a suite and runs it on this machine.
func runYAML(t *testing.T, suite string) *Report {
	t.Helper()
	s, err := Parse("suite.yaml", []byte(suite))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return Run(context.Background(), localRunner{}, s, Options{Host: "localhost"})
}

// runOne runs a suite of one check and returns its result.
func runOne(t *testing.T, check string) CheckResult {
	t.Helper()
	rep := runYAML(t, "defaults: {timeout: 2s, retries: 0}\nchecks:\n"+check)
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	return rep.Results[0]
}

func wantPass(t *testing.T, r CheckResult) {
	t.Helper()
	if !r.Passed {
		t.Errorf("%s: failed: %s\noutput:\n%s", r.Name, r.Message, r.Output)
	}
}

func wantFail(t *testing.T, r CheckResult, msg string) {
	t.Helper()
	if r.Passed {
		t.Errorf("%s: passed (%s), want failure", r.Name, r.Message)
	} else if !bytes.Contains([]byte(r.Message), []byte(msg)) {
		t.Errorf("%s: message %q does not contain %q", r.Name, r.Message, msg)
	}
}
