package verify

import (
	"bytes"
	"context"
	"testing"
)

// localRunner runs commands with this machine's bash, so the checks in the
// tests exercise real tools (stat, ss, sysctl, dpkg-query) and real state.
var localRunner = Local{Shell: "bash"}

// runYAML parses a suite and runs it on this machine.
func runYAML(t *testing.T, suite string) *Report {
	t.Helper()
	s, err := Parse("suite.yaml", []byte(suite))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return Run(context.Background(), localRunner, s, Options{Host: "localhost"})
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
