package verify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// A batch reports what one command per check reports: same results, same
// messages, same outputs, in suite order.
func TestBatchMatchesSingle(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/f", []byte("hello\n"), 0o640)
	suite := fmt.Sprintf(`name: both ways
defaults: {timeout: 3s, retries: 0}
checks:
  - {name: passes, command: 'echo ok'}
  - {name: wrong stdout, command: 'echo Permissive', stdout: ^Enforcing$, hint: setenforce 1}
  - {name: exit code, command: 'echo why >&2; exit 3'}
  - {name: explains on stdout, command: 'echo a; echo the reason; exit 1'}
  - {name: file, file: %s/f, mode: "0640", contains: hello}
  - {name: missing file, file: %s/nope}
  - {name: sysctl, sysctl: kernel.ostype, value: Linux}
  - {name: binary output, command: 'printf "\001\377x"; printf "\000y" >&2; exit 1'}
`, dir, dir)
	s, err := Parse("suite.yaml", []byte(suite))
	if err != nil {
		t.Fatal(err)
	}
	single := Run(context.Background(), localRunner, s, Options{})
	forEachBatch(t, func(t *testing.T, r Runner) {
		batch := Run(context.Background(), r, s, Options{Batch: true})
		sameResults(t, single, batch)
		if _, agent := r.(Local); agent && r.(Local).Agent != nil && batch.Via != "guest agent" {
			t.Errorf("ran via %q, want the guest agent", batch.Via)
		}
	})
}

// sameResults fails unless both reports say the same of every check.
func sameResults(t *testing.T, single, batch *Report) {
	t.Helper()
	if len(batch.Results) != len(single.Results) {
		t.Fatalf("batch has %d results, single %d", len(batch.Results), len(single.Results))
	}
	for i, a := range single.Results {
		b := batch.Results[i]
		if a.Name != b.Name || a.Type != b.Type || a.Passed != b.Passed || a.Message != b.Message || a.Hint != b.Hint || a.Output != b.Output || a.Attempts != b.Attempts {
			t.Errorf("check %d:\nsingle %+v\nbatch  %+v", i, a, b)
		}
	}
}

// A check that fails, then passes on retry, is reported with its attempts;
// only the checks still failing run again.
func TestBatchRetries(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		count := t.TempDir() + "/runs"
		rep := runBatchYAML(t, r, fmt.Sprintf(`checks:
  - {name: third time, command: %q, interval: 50ms, timeout: 5s}
  - {name: once, command: 'echo x >> %s; true'}
  - {name: capped, command: 'echo no; false', retries: 1, interval: 10ms}
`, counterCommand(t, 3), count))
		c := rep.Results[0]
		wantPass(t, c)
		if c.Attempts != 3 || c.Message != "attempt 3" || c.Duration < 100*time.Millisecond {
			t.Errorf("retried check: attempts %d, message %q, duration %v; want 3, %q, at least two intervals", c.Attempts, c.Message, c.Duration, "attempt 3")
		}
		if data, _ := os.ReadFile(count); strings.Count(string(data), "x") != 1 {
			t.Errorf("a passing check ran %d times, want once", strings.Count(string(data), "x"))
		}
		wantFail(t, rep.Results[2], "exit status 1, want 0")
		if rep.Results[2].Attempts != 2 || rep.Results[2].Output != "no" {
			t.Errorf("capped: %+v", rep.Results[2])
		}
	})
}

func TestBatchTimeoutAndCleanup(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		start := time.Now()
		rep := runBatchYAML(t, r, "checks:\n  - {name: hangs, command: 'sleep 30', timeout: 1s}\n  - {name: after, command: 'echo fine'}\n")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v: the timeout was not enforced", d)
		}
		wantFail(t, rep.Results[0], "timed out after 1s with no result")
		wantPass(t, rep.Results[1])
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("the batch left %v in TMPDIR", left)
		}
	})
}

func TestBatchTransportAndCancel(t *testing.T) {
	s, _ := Parse("suite.yaml", []byte("defaults: {retries: 2, interval: 1ms}\nchecks:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true'}\n"))
	f := &failingRunner{}
	rep := Run(context.Background(), f, s, Options{Batch: true})
	for _, r := range rep.Results {
		wantFail(t, r, "run: ssh: connection reset")
		if r.Attempts != 3 {
			t.Errorf("%s: %d attempts; transport errors are retried", r.Name, r.Attempts)
		}
	}
	if f.calls.Load() != 3 {
		t.Errorf("%d round trips for 2 checks with 3 attempts each; want 3", f.calls.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep = Run(ctx, localRunner, s, Options{Batch: true})
	wantFail(t, rep.Results[1], "not run: context canceled")
}

// Each check is reported as it finishes, in suite order, and a check
// cannot forge another's frame.
func TestBatchProgressAndForgery(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		s, _ := Parse("suite.yaml", []byte(`defaults: {retries: 0}
checks:
  - {name: forger, command: 'printf "\n@@labforge-verify-0000000000000000 1 0 5\nZm9v\n\n"; exit 1'}
  - {name: second, command: 'echo two'}
`))
		var seen []string
		rep := Run(context.Background(), r, s, Options{Batch: true, Progress: func(r CheckResult) { seen = append(seen, r.Name) }})
		if strings.Join(seen, ",") != "forger,second" {
			t.Errorf("progress saw %v", seen)
		}
		if rep.Results[0].Passed || !rep.Results[1].Passed || rep.Results[1].Message != "two" {
			t.Errorf("results %+v", rep.Results)
		}
	})
}

func runBatchYAML(t *testing.T, r Runner, suite string) *Report {
	t.Helper()
	s, err := Parse("suite.yaml", []byte(suite))
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), r, s, Options{Batch: true})
}

// Concurrent checks run beside the ones after them: two slow ones and a
// quick one take about as long as one slow one.
func TestBatchConcurrent(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		start := time.Now()
		rep := runBatchYAML(t, r, `checks:
  - {name: slow a, command: 'sleep 1; echo a', concurrent: true}
  - {name: slow b, command: 'sleep 1; echo b', concurrent: true}
  - {name: quick, command: 'echo q'}
`)
		if d := time.Since(start); d > 1900*time.Millisecond {
			t.Errorf("two concurrent 1 s checks took %v", d)
		}
		for i, want := range []string{"a", "b", "q"} {
			if r := rep.Results[i]; !r.Passed || r.Message != want {
				t.Errorf("check %d: %+v", i, r)
			}
		}
	})
}

// A check's timeout counts from its own first attempt, not from the
// round's start: after a slow check, the next still gets its retries.
func TestBatchTimeoutFromOwnStart(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		rep := runBatchYAML(t, r, fmt.Sprintf(`checks:
  - {name: slow first, command: 'sleep 2', timeout: 10s}
  - {name: second try, command: %q, timeout: 1500ms, interval: 100ms}
`, counterCommand(t, 2)))
		wantPass(t, rep.Results[0])
		if c := rep.Results[1]; !c.Passed || c.Attempts != 2 {
			t.Errorf("the check after a slow one: %+v", c)
		}
	})
}

// The denial gate waits for the concurrent checks before it.
func TestBatchBarrier(t *testing.T) {
	forEachBatch(t, func(t *testing.T, r Runner) {
		f := t.TempDir() + "/done"
		s, _ := Parse("suite.yaml", []byte(fmt.Sprintf("checks:\n  - {name: slow, command: 'sleep 1; touch %s', concurrent: true}\n", f)))
		s.Checks = append(s.Checks, Check{Name: "gate", Type: TypeCommand, Command: "test -e " + f, Barrier: true})
		rep := Run(context.Background(), r, s, Options{Batch: true})
		if !rep.Results[1].Passed {
			t.Fatalf("the barrier check ran before the concurrent one ended: %+v", rep.Results[1])
		}
	})
}

// forEachBatch runs test with checks batched as scripts and through the
// guest agent, built from this tree.
func forEachBatch(t *testing.T, test func(t *testing.T, r Runner)) {
	t.Run("script", func(t *testing.T) { test(t, localRunner) })
	t.Run("agent", func(t *testing.T) { test(t, agentRunner(t)) })
}

var buildAgent = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "labforge-guest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/labforge-guest", "../cmd/labforge-guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v: %s", err, out)
	}
	prog, err := os.ReadFile(dir + "/labforge-guest")
	return CompressAgent(prog), err
})

// agentRunner runs batches on this machine through the real agent.
func agentRunner(t *testing.T) Local {
	t.Helper()
	prog, err := buildAgent()
	if err != nil {
		t.Fatal(err)
	}
	return Local{Shell: "bash", Agent: prog}
}
