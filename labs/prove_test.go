package labs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/verify"
)

// proveHost is a host whose one piece of state, "solved", the exercise's
// scripts change and its check reads: enough to drive Prove through every
// path without a guest.
type proveHost struct {
	solved   bool
	leak     bool   // the check prints the answer while it fails
	failing  string // a script containing this exits 1
	ran      []string
	resetRan int
}

func (h *proveHost) Run(ctx context.Context, cmd string) (verify.Result, error) {
	switch {
	case h.failing != "" && strings.Contains(cmd, h.failing):
		h.ran = append(h.ran, "FAIL "+h.failing)
		return verify.Result{ExitCode: 1, Stdout: "it broke"}, nil
	case strings.Contains(cmd, "SOLVE"):
		h.solved = true
		h.ran = append(h.ran, "solve")
	case strings.Contains(cmd, "RESET"):
		h.solved = false
		h.resetRan++
		h.ran = append(h.ran, "reset")
	case strings.Contains(cmd, "MISTAKE"):
		h.ran = append(h.ran, "mistake")
	case strings.Contains(cmd, "IS-DONE"):
		if h.solved {
			return verify.Result{Stdout: "ok"}, nil
		}
		if h.leak {
			return verify.Result{ExitCode: 1, Stdout: "want token=s3cr3t-42"}, nil
		}
		return verify.Result{ExitCode: 1, Stdout: "not yet"}, nil
	case strings.Contains(cmd, "answers.txt"):
		if h.solved {
			return verify.Result{Stdout: "token = s3cr3t-42\nshort=ab\n"}, nil
		}
	}
	return verify.Result{}, nil
}

func (h *proveHost) Put(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error {
	return nil
}

func proveExercise() *Exercise {
	one := 0
	return &Exercise{ID: "t-prove", Setup: "echo SETUP", Solution: "echo SOLVE", Reset: "echo RESET",
		Checks:        []verify.Check{{Name: "solved", Type: verify.TypeCommand, Command: "echo IS-DONE", Hint: "solve it", Retries: &one}},
		WrongAttempts: []WrongAttempt{{Name: "do nothing", Script: "echo MISTAKE", Fails: "solved", Hint: "solve"}}}
}

func outcome(rep *verify.Report) map[string]bool {
	m := map[string]bool{}
	for _, r := range rep.Results {
		m[r.Name] = r.Passed
	}
	return m
}

func TestProveGoodExercise(t *testing.T) {
	h := &proveHost{}
	var out bytes.Buffer
	rep := Prove(context.Background(), &out, h, Env{}, proveExercise(), true)
	if rep.Err() != nil {
		t.Fatalf("a good exercise failed: %v\n%s", rep.Err(), out.String())
	}
	got := outcome(rep)
	for _, step := range []string{"start", "start again (setup is idempotent)", "every check fails before the solution",
		"wrong attempt: do nothing", "solution", "check passes after the solution",
		"no check shows an answer before it is given", "reset"} {
		if !got[step] {
			t.Errorf("step %q missing or failed: %v", step, got)
		}
	}
	if last := rep.Results[len(rep.Results)-1].Name; last != "reset" {
		t.Fatalf("the last step is %q, want the reset", last)
	}
	if !strings.Contains(out.String(), "==> t-prove: solution: ok") {
		t.Fatalf("no line for the solution step:\n%s", out.String())
	}
}

// A check that prints the value it compares with, while it fails before
// the student did anything, fails the proof.
func TestProveCatchesAnswerShown(t *testing.T) {
	rep := Prove(context.Background(), &bytes.Buffer{}, &proveHost{leak: true}, Env{}, proveExercise(), false)
	var msg string
	for _, r := range rep.Results {
		if r.Name == "no check shows an answer before it is given" && !r.Passed {
			msg = r.Message
		}
	}
	if !strings.Contains(msg, `check "solved" showed the answer to token`) {
		t.Fatalf("the leak went unnoticed: %+v", rep.Results)
	}
}

// A failure midway ends the proof there, and the host is still reset.
func TestProveFailureMidwayStillResets(t *testing.T) {
	h := &proveHost{failing: "SOLVE"}
	rep := Prove(context.Background(), &bytes.Buffer{}, h, Env{}, proveExercise(), false)
	got := outcome(rep)
	if got["solution"] || rep.Err() == nil {
		t.Fatalf("a failing solution passed: %v", got)
	}
	if _, ran := got["check passes after the solution"]; ran {
		t.Fatal("the check ran after a failed solution")
	}
	if !got["reset"] || h.resetRan != 1 {
		t.Fatalf("reset after the failure: %v (ran %d times)", got, h.resetRan)
	}
	for _, r := range rep.Results {
		if r.Name == "solution" && !strings.Contains(r.Output, "it broke") {
			t.Fatalf("the failed step's output is not in the report: %q", r.Output)
		}
	}
}

// A check that already passes on the untouched exercise proves nothing.
func TestProveCatchesCheckThatPassesUntouched(t *testing.T) {
	e := proveExercise()
	e.Setup = "echo SETUP; echo SOLVE" // setup solves it
	rep := Prove(context.Background(), &bytes.Buffer{}, &proveHost{}, Env{}, e, false)
	if outcome(rep)["every check fails before the solution"] {
		t.Fatal("an exercise solved by its own setup passed the before-check")
	}
}

// One check of two that passes untouched is enough to fail the proof.
func TestProveCatchesOneCheckPassingUntouched(t *testing.T) {
	e := proveExercise()
	one := 0
	e.Checks = append(e.Checks, verify.Check{Name: "always", Type: verify.TypeCommand, Command: "echo ALWAYS", Hint: "h", Pointer: "p", Retries: &one})
	rep := Prove(context.Background(), &bytes.Buffer{}, &proveHost{}, Env{}, e, false)
	for _, r := range rep.Results {
		if r.Name == "every check fails before the solution" {
			if r.Passed || !strings.Contains(r.Message, `"always"`) {
				t.Fatalf("before-check: %v %q", r.Passed, r.Message)
			}
			return
		}
	}
	t.Fatal("no before-check")
}

// A wrong attempt passes only when the check it names fails.
func TestProveWrongAttemptUnnoticed(t *testing.T) {
	e := proveExercise()
	e.WrongAttempts[0].Script = "echo SOLVE" // the "mistake" solves it
	rep := Prove(context.Background(), &bytes.Buffer{}, &proveHost{}, Env{}, e, true)
	for _, r := range rep.Results {
		if r.Name == "wrong attempt: do nothing" {
			if r.Passed || !strings.Contains(r.Message, "goes unnoticed") {
				t.Fatalf("an unnoticed mistake: %+v", r)
			}
			return
		}
	}
	t.Fatal("the wrong attempt was not played")
}

// Hints come in stages: the pointer at a check's first failures, the full
// hint from the FullHintAfter-th on or once the student asked; a reset
// starts over. Run on this machine (sh), the record in a temporary
// directory.
func TestHintStages(t *testing.T) {
	ctx := context.Background()
	h := LocalHost{}
	env := Env{Status: t.TempDir()}
	zero := 0
	e := &Exercise{ID: "t-hints", Reset: "true", Checks: []verify.Check{
		{Name: "never", Type: verify.TypeCommand, Command: "false", Hint: "do X", Pointer: "look at Y", Retries: &zero},
		{Name: "always", Type: verify.TypeCommand, Command: "true", Hint: "fine", Pointer: "fine?", Retries: &zero}}}
	hint := func() string { return env.Check(ctx, h, e, false, verify.Options{}).Results[0].Hint }
	for i := 1; i < FullHintAfter; i++ {
		if got := hint(); !strings.HasPrefix(got, "look at Y") || !strings.Contains(got, "labs hint t-hints") {
			t.Fatalf("failure %d shows %q, want the pointer", i, got)
		}
	}
	if got := hint(); got != "do X" {
		t.Fatalf("failure %d shows %q, want the full hint", FullHintAfter, got)
	}
	data, err := os.ReadFile(filepath.Join(env.Status, "t-hints.hints"))
	if err != nil || string(data) != fmt.Sprintf("%d\tnever\n", FullHintAfter) {
		t.Fatalf("record %q, %v", data, err)
	}
	if _, err := env.Reset(ctx, h, e); err != nil {
		t.Fatal(err)
	}
	if got := hint(); !strings.HasPrefix(got, "look at Y") {
		t.Fatalf("after reset: %q", got)
	}
	if env.Hint(ctx, h, e)[0].Hint != "do X" {
		t.Fatal("labs hint does not give the full hint")
	}
	if got := hint(); got != "do X" {
		t.Fatalf("after labs hint: %q", got)
	}
}

// What the class dashboard reads: started, failing with its runs and hint
// stage, passed; the records of a reset exercise are gone.
func TestProgressRecords(t *testing.T) {
	ctx := context.Background()
	h := LocalHost{}
	env := Env{Status: t.TempDir(), User: "root"}
	t.Setenv("HOME", t.TempDir())
	flag := filepath.Join(t.TempDir(), "done")
	zero := 0
	e := &Exercise{ID: "t-progress", Reset: "true", Setup: "true", Checks: []verify.Check{
		{Name: "done", Type: verify.TypeCommand, Command: "test -e " + flag, Retries: &zero}}}
	other := &Exercise{ID: "t-other"}
	c := &Course{Exercises: []*Exercise{e, other}}
	read := func() Progress {
		res, err := h.Run(ctx, env.ProgressCommand())
		if err != nil {
			t.Fatal(err)
		}
		ps := ParseProgress(c, res.Stdout)
		if len(ps) != 2 || ps[1].State() != "not started" {
			t.Fatalf("progress %+v", ps)
		}
		return ps[0]
	}
	if p := read(); p.State() != "not started" {
		t.Fatalf("before start: %+v", p)
	}
	if _, err := env.Start(ctx, h, e); err != nil {
		t.Fatal(err)
	}
	if p := read(); p.State() != "started" || p.Started.IsZero() {
		t.Fatalf("after start: %+v", p)
	}
	env.Check(ctx, h, e, false, verify.Options{})
	env.Check(ctx, h, e, false, verify.Options{})
	if p := read(); p.State() != "failing" || p.Attempts != 2 || p.HintStage != 2 || p.Passed != 0 || p.Checks != 1 {
		t.Fatalf("after two failing checks: %+v", p)
	}
	os.WriteFile(flag, nil, 0o644)
	env.Check(ctx, h, e, false, verify.Options{})
	if p := read(); p.State() != "passed" || p.Attempts != 3 || p.Activity.IsZero() {
		t.Fatalf("after the passing check: %+v", p)
	}
	if _, err := env.Reset(ctx, h, e); err != nil {
		t.Fatal(err)
	}
	if p := read(); p.State() != "not started" {
		t.Fatalf("after reset: %+v", p)
	}
}
