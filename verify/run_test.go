package verify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// counterCommand fails until it has been run n times.
func counterCommand(t *testing.T, n int) string {
	f := filepath.Join(t.TempDir(), "count")
	return fmt.Sprintf(`n=$(cat '%s' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '%s'; echo "attempt $n"; [ $n -ge %d ]`, f, f, n)
}

func TestRetryUntilPass(t *testing.T) {
	rep := runYAML(t, fmt.Sprintf("checks:\n  - name: third time\n    command: %q\n    interval: 20ms\n    timeout: 5s\n", counterCommand(t, 3)))
	r := rep.Results[0]
	wantPass(t, r)
	if r.Attempts != 3 || r.Message != "attempt 3" {
		t.Errorf("attempts = %d, message = %q; want 3, %q", r.Attempts, r.Message, "attempt 3")
	}
	if r.Duration < 40*time.Millisecond {
		t.Errorf("duration %v: did not wait the interval between attempts", r.Duration)
	}
}

func TestRetriesCap(t *testing.T) {
	rep := runYAML(t, fmt.Sprintf("defaults: {retries: 1, interval: 10ms}\nchecks:\n  - name: capped\n    command: %q\n", counterCommand(t, 3)))
	r := rep.Results[0]
	wantFail(t, r, "exit status 1, want 0")
	if r.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (retries: 1)", r.Attempts)
	}
	if r.Output != "attempt 2" {
		t.Errorf("output = %q, want the last attempt's", r.Output)
	}
}

func TestTimeout(t *testing.T) {
	start := time.Now()
	rep := runYAML(t, "checks:\n  - {name: hangs, command: 'sleep 10', timeout: 200ms}\n"+
		"  - {name: keeps failing, command: 'echo no; false', timeout: 300ms, interval: 50ms}\n")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; the timeouts were not enforced", d)
	}
	wantFail(t, rep.Results[0], "timed out after 200ms with no result")
	r := rep.Results[1]
	wantFail(t, r, "exit status 1, want 0")
	if r.Attempts < 3 || r.Output != "no" {
		t.Errorf("attempts = %d, output = %q; want several attempts and the output", r.Attempts, r.Output)
	}
}

func TestCancel(t *testing.T) {
	s, err := Parse("suite.yaml", []byte("checks:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := Run(ctx, localRunner, s, Options{})
	if len(rep.Results) != 2 || rep.Failed() != 2 {
		t.Fatalf("results = %+v, want both failed", rep.Results)
	}
	wantFail(t, rep.Results[1], "not run: context canceled")
}

// failingRunner stands in for a dropped connection, which no local shell
// can produce.
type failingRunner struct{ calls atomic.Int32 }

func (f *failingRunner) Run(ctx context.Context, cmd string) (Result, error) {
	f.calls.Add(1)
	return Result{}, errors.New("ssh: connection reset")
}

func TestTransportError(t *testing.T) {
	s, err := Parse("suite.yaml", []byte("defaults: {retries: 2, interval: 1ms}\nchecks:\n  - {name: a, command: 'true'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := &failingRunner{}
	r := Run(context.Background(), f, s, Options{}).Results[0]
	wantFail(t, r, "run: ssh: connection reset")
	if r.Attempts != 3 || f.calls.Load() != 3 {
		t.Errorf("attempts = %d, calls = %d; transport errors should be retried", r.Attempts, f.calls.Load())
	}
}

func TestReportErr(t *testing.T) {
	rep := runYAML(t, `name: mixed
defaults: {timeout: 1s, retries: 0}
checks:
  - {name: selinux enforcing, command: 'echo Permissive', stdout: ^Enforcing$, hint: run setenforce 1}
  - {name: shell works, command: 'true'}
  - {name: sshd running, command: 'exit 3'}
`)
	if rep.Passed() != 1 || rep.Failed() != 2 {
		t.Errorf("passed, failed = %d, %d; want 1, 2", rep.Passed(), rep.Failed())
	}
	err := rep.Err()
	if want := "2 of 3 checks failed: selinux enforcing, sshd running"; err == nil || err.Error() != want {
		t.Errorf("Err() = %v, want %s", err, want)
	}
	if rep.Suite != "mixed" || rep.Host != "localhost" || rep.Duration <= 0 || rep.Started.IsZero() {
		t.Errorf("report header = %q %q %v %v", rep.Suite, rep.Host, rep.Duration, rep.Started)
	}
	if r := rep.Results[0]; r.Hint != "run setenforce 1" || r.Type != TypeCommand || r.Output != "Permissive" {
		t.Errorf("result = %+v", r)
	}
	if err := runYAML(t, "checks:\n  - {name: ok, command: 'true'}\n").Err(); err != nil {
		t.Errorf("Err() = %v for a passing suite", err)
	}
}

func TestParallelAndProgress(t *testing.T) {
	var b strings.Builder
	b.WriteString("checks:\n")
	for i := range 4 {
		fmt.Fprintf(&b, "  - {name: c%d, command: 'sleep 0.3; echo %d'}\n", i, i)
	}
	s, err := Parse("suite.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string // Progress is never called concurrently
	start := time.Now()
	rep := Run(context.Background(), localRunner, s, Options{Parallel: 4, Progress: func(r CheckResult) {
		seen = append(seen, r.Name)
	}})
	if d := time.Since(start); d > time.Second {
		t.Errorf("4 checks of 0.3s with Parallel 4 took %v", d)
	}
	if len(seen) != 4 || rep.Failed() != 0 {
		t.Errorf("progress saw %v, failed = %d", seen, rep.Failed())
	}
	for i, r := range rep.Results {
		if r.Name != fmt.Sprintf("c%d", i) || r.Message != fmt.Sprint(i) {
			t.Errorf("result %d = %s %q: results must stay in suite order", i, r.Name, r.Message)
		}
	}
}

func TestInvalidCheckInGo(t *testing.T) {
	// Suites built in Go skip Parse; a bad check fails instead of running.
	s := &Suite{Name: "go", Checks: []Check{{Name: "no type"}, {Name: "port", Type: TypePort}}}
	rep := Run(context.Background(), localRunner, s, Options{})
	wantFail(t, rep.Results[0], `invalid check: type: unknown check type "" (known: command, file,`)
	wantFail(t, rep.Results[1], "invalid check: port: must be between 1 and 65535")
}
