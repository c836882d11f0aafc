package labs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/labforge/labforge/verify"
)

// Prove proves one exercise on a host: start, start again (setup must be
// idempotent), check (every check must fail: nothing is done yet), optionally each
// wrong attempt (the check it names must fail, with its hint), solution,
// check (must pass), no answer of the solution shown by the checks that
// failed before it, and always a reset at the end, whatever failed. Each
// step is one test case of the returned report; out gets a line a step.
func Prove(ctx context.Context, out io.Writer, h Host, env Env, e *Exercise, wrong bool) *verify.Report {
	rep := &verify.Report{Suite: "lab " + e.ID, Started: time.Now()}
	add := func(r verify.CheckResult) bool {
		rep.Results = append(rep.Results, r)
		status := "ok"
		if r.Message != "" && r.Message != "done" {
			status += " (" + r.Message + ")"
		}
		if !r.Passed {
			status = "FAILED: " + r.Message
		}
		fmt.Fprintf(out, "==> %s: %s: %s\n", e.ID, r.Name, status)
		return r.Passed
	}
	script := func(name string, run func() (string, error)) bool {
		t0 := time.Now()
		log, err := run()
		return add(StepResult(name, t0, err, log))
	}
	defer func() {
		// Always reset, so the next exercise starts from a clean host.
		script("reset", func() (string, error) { return env.Reset(ctx, h, e) })
		rep.Duration = time.Since(rep.Started)
	}()

	if !script("start", func() (string, error) { return env.Start(ctx, h, e) }) {
		return rep
	}
	if !script("start again (setup is idempotent)", func() (string, error) { return env.Start(ctx, h, e) }) {
		return rep
	}
	t0 := time.Now()
	before := env.Check(ctx, h, e, false, verify.Options{})
	// Every check must fail: one that passes untouched proves nothing the
	// student did.
	var passing []string
	for _, c := range before.Results {
		if c.Passed {
			passing = append(passing, fmt.Sprintf("%q", c.Name))
		}
	}
	r := verify.CheckResult{Name: "every check fails before the solution", Type: "lab", Duration: time.Since(t0), Attempts: 1, Passed: len(passing) == 0}
	if r.Passed {
		r.Message = fmt.Sprintf("all %d checks fail on the untouched exercise", len(before.Results))
	} else {
		r.Message = "passing on the untouched exercise, so not testing the student's work: " + strings.Join(passing, ", ")
	}
	r.Output = tableText(before)
	add(r)

	if wrong {
		for _, w := range e.WrongAttempts {
			if ctx.Err() != nil {
				return rep
			}
			add(proveWrongAttempt(ctx, h, env, e, w))
		}
		if len(e.WrongAttempts) > 0 {
			// The solution starts from a fresh start, not from the last mistake.
			if !script("reset and start after the wrong attempts", func() (string, error) {
				out, err := env.Reset(ctx, h, e)
				if err != nil {
					return out, err
				}
				more, err := env.Start(ctx, h, e)
				return out + more, err
			}) {
				return rep
			}
		}
	}

	if !script("solution", func() (string, error) { return env.Solve(ctx, h, e) }) {
		return rep
	}
	t0 = time.Now()
	after := env.Check(ctx, h, e, true, verify.Options{})
	r = verify.CheckResult{Name: "check passes after the solution", Type: "lab", Duration: time.Since(t0), Attempts: 1, Passed: after.Err() == nil}
	if r.Passed {
		r.Message = fmt.Sprintf("all %d checks pass", len(after.Results))
	} else {
		r.Message = after.Err().Error()
		for _, c := range after.Results {
			if !c.Passed && r.Hint == "" {
				r.Hint = c.Hint
			}
		}
	}
	r.Output = tableText(after)
	if add(r) {
		add(noAnswerShown(ctx, h, env, e, before))
	}
	return rep
}

// noAnswerShown passes when no answer of the solution (a value of its
// answers.txt) was in what the checks printed before the student did
// anything: a check that shows the value it compares with hands out the
// answer. Values of fewer than 4 characters, or that the instructions
// give, prove nothing either way.
func noAnswerShown(ctx context.Context, h Host, env Env, e *Exercise, before *verify.Report) (r verify.CheckResult) {
	t0 := time.Now()
	r = verify.CheckResult{Name: "no check shows an answer before it is given", Type: "lab", Attempts: 1, Passed: true}
	// Named result: the deferred time lands in what the caller gets.
	defer func() { r.Duration = time.Since(t0) }()
	answers, err := env.Attempt(ctx, h, e, "read answers", `cat "$LAB_DIR/answers.txt" 2>/dev/null || true`)
	if err != nil {
		r.Passed, r.Message = false, err.Error()
		return r
	}
	n := 0
	for _, line := range strings.Split(answers, "\n") {
		key, val, ok := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || len(val) < 4 || strings.Contains(e.Instructions, val) {
			continue
		}
		n++
		for _, c := range before.Results {
			if !c.Passed && strings.Contains(c.Message+"\n"+c.Output, val) {
				r.Passed = false
				r.Message = fmt.Sprintf("check %q showed the answer to %s before it was given: %s", c.Name, key, c.Message)
				return r
			}
		}
	}
	r.Message = fmt.Sprintf("%d answers, none shown by a failing check", n)
	return r
}

// proveWrongAttempt starts the exercise afresh, plays the mistake, and passes
// when the check the attempt names fails for it (so the student sees its
// hint; that the hint fits the mistake the loader checks).
func proveWrongAttempt(ctx context.Context, h Host, env Env, e *Exercise, w WrongAttempt) (r verify.CheckResult) {
	t0 := time.Now()
	r = verify.CheckResult{Name: "wrong attempt: " + w.Name, Type: "lab", Attempts: 1}
	// Named result: the deferred time lands in what the caller gets.
	defer func() { r.Duration = time.Since(t0) }()
	var log strings.Builder
	for _, step := range []func() (string, error){
		func() (string, error) { return env.Reset(ctx, h, e) },
		func() (string, error) { return env.Start(ctx, h, e) },
		func() (string, error) { return env.Attempt(ctx, h, e, "wrong attempt", w.Script) },
	} {
		out, err := step()
		log.WriteString(out)
		if err != nil {
			r.Message, r.Output = err.Error(), tail(log.String())
			return r
		}
	}
	rep := env.Check(ctx, h, e, false, verify.Options{})
	r.Output = tableText(rep)
	i := slices.IndexFunc(rep.Results, func(c verify.CheckResult) bool { return c.Name == w.Fails })
	switch {
	case i < 0:
		r.Message = fmt.Sprintf("no check %q", w.Fails)
	case rep.Results[i].Passed:
		r.Message = fmt.Sprintf("check %q passed: the mistake goes unnoticed", w.Fails)
	case w.Output != "" && !strings.Contains(rep.Results[i].Message+"\n"+rep.Results[i].Output, w.Output):
		r.Message = fmt.Sprintf("check %q failed, but not for this mistake: its output does not say %q", w.Fails, w.Output)
	default:
		r.Passed = true
		r.Message = fmt.Sprintf("check %q fails (%s) with hint: %s", w.Fails, rep.Results[i].Message, rep.Results[i].Hint)
	}
	return r
}

// StepResult is the test case of one step that ran since t0.
func StepResult(name string, t0 time.Time, err error, log string) verify.CheckResult {
	r := verify.CheckResult{Name: name, Type: "lab", Passed: err == nil, Duration: time.Since(t0), Attempts: 1}
	if err != nil {
		r.Message = err.Error()
		r.Output = tail(log)
	} else {
		r.Message = "done"
	}
	return r
}

func tableText(rep *verify.Report) string {
	var b bytes.Buffer
	_ = verify.WriteTable(&b, rep)
	return b.String()
}

// tail keeps the end of a script's output for the report.
func tail(s string) string {
	const max = 4000
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}
