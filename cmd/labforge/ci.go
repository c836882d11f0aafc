package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/labs"
	"github.com/labforge/labforge/verify"
)

type ciFlags struct {
	up            upFlags
	keep          bool
	wrongAttempts []string // exercise ids, or "all"
	only          []string
	junit         string
	on            string
}

func newCICmd(g *globalFlags) *cobra.Command {
	f := &ciFlags{}
	cmd := &cobra.Command{
		Use:   "ci SPEC --junit FILE",
		Short: "Prove the course on a fresh host: build, boot, verify, then solve every exercise",
		Long: `ci is what the nightly job runs. It builds the spec's image (or reuses the
cached one), boots it and runs its verify suite as up does, installs the
course, and then for every exercise: start, start again (setup must be
idempotent), check (it must fail: the exercise is not done), solve, check
(it must pass, with retries while things settle), and reset. With
--wrong-attempts it also plays each exercise's wrong attempts and expects
the check they name to fail (--wrong-attempts=ID,ID: those exercises'
only). The host is destroyed at the end (--keep
leaves it up). One JUnit report holds the host's suite and a suite per
exercise; the exit status is non-zero when anything failed.

With --on NAME instead of SPEC it proves the course on a host that is
already up (no build, boot, verify or teardown): how a test suite that has
booted the lab host for its own checks goes on to the course.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.on != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCI(cmd.Context(), cmd.OutOrStdout(), args, f, g)
		},
	}
	cmd.Flags().StringVarP(&f.up.name, "name", "n", "ci", "instance name")
	cmd.Flags().DurationVar(&f.up.bootTimeout, "boot-timeout", 10*time.Minute, "how long the guest may take to answer on SSH")
	cmd.Flags().StringVar(&f.junit, "junit", "", "write the JUnit report to this file")
	cmd.Flags().BoolVar(&f.keep, "keep", false, "leave the host up at the end")
	cmd.Flags().StringSliceVar(&f.wrongAttempts, "wrong-attempts", nil, "also play the wrong attempts of every exercise (or of these, comma-separated ids)")
	cmd.Flags().Lookup("wrong-attempts").NoOptDefVal = "all"
	cmd.Flags().StringSliceVar(&f.only, "only", nil, "only these exercises (comma-separated ids)")
	cmd.Flags().StringVar(&f.on, "on", "", "prove the course on this running instance instead of booting SPEC")
	f.up.build.register(cmd)
	return cmd
}

func runCI(ctx context.Context, out io.Writer, args []string, f *ciFlags, g *globalFlags) (err error) {
	c, err := course()
	if err != nil {
		return err
	}
	list := c.Exercises
	if len(f.only) > 0 {
		list = nil
		for _, id := range f.only {
			e, err := c.Get(id)
			if err != nil {
				return err
			}
			list = append(list, e)
		}
	}
	wrong := map[string]bool{}
	for _, id := range f.wrongAttempts {
		if id == "all" {
			for _, e := range c.Exercises {
				wrong[e.ID] = true
			}
			continue
		}
		if _, err := c.Get(id); err != nil {
			return fmt.Errorf("--wrong-attempts: %w", err)
		}
		wrong[id] = true
	}
	self, err := selfBinary()
	if err != nil {
		return err
	}
	reps := []*verify.Report{}
	var h labs.Host
	var env labs.Env
	var hostName string
	if f.on != "" {
		t := labTarget{name: f.on}
		var done func()
		if h, env, done, err = t.open(ctx); err != nil {
			return err
		}
		defer done()
		hostName = f.on
	} else {
		var up *upResult
		if up, err = ciUp(ctx, out, args, f, g); err != nil {
			return err
		}
		defer up.client.Close()
		if !f.keep {
			defer func() {
				// Tear down even after Ctrl-C: a CI host must not outlive its run.
				if derr := ciDown(context.WithoutCancel(ctx), f.up.name); derr != nil {
					err = errorsJoin(err, derr)
				} else {
					fmt.Fprintf(out, "==> %s: down\n", f.up.name)
				}
			}()
		}
		if up.rep != nil {
			reps = append(reps, up.rep)
		}
		h = sshHost{instance.RootRunner{Client: up.client}}
		env = labs.Env{User: up.inst.User}
		hostName = up.inst.Name
	}

	installRep := &verify.Report{Suite: "course install", Host: hostName, Started: time.Now()}
	t0 := time.Now()
	ierr := labs.Install(ctx, h, c, env, self)
	installRep.Results = append(installRep.Results, stepResult("install the course on the host", t0, ierr, ""))
	installRep.Duration = time.Since(installRep.Started)
	reps = append(reps, installRep)
	if ierr == nil {
		for _, e := range list {
			if ctx.Err() != nil {
				break
			}
			rep := ciExercise(ctx, out, h, env, e, wrong[e.ID])
			rep.Host = hostName
			reps = append(reps, rep)
		}
	}

	failed := 0
	fmt.Fprintln(out, "\n==> course summary")
	for _, r := range reps {
		status := "PASS"
		if r.Failed() > 0 {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(out, "%s  %s (%d of %d steps passed)\n", status, r.Suite, r.Passed(), len(r.Results))
	}
	if f.junit != "" {
		rf := reportFlags{junit: f.junit}
		if err := rf.writeJUnit(reps...); err != nil {
			return err
		}
	}
	if ierr != nil {
		return ierr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d of %d suites failed\n", failed, len(reps))
		return exitError(1)
	}
	return nil
}

// ciUp builds and boots SPEC as up does and runs its verify suite.
func ciUp(ctx context.Context, out io.Writer, args []string, f *ciFlags, g *globalFlags) (*upResult, error) {
	spec, err := loadSpec(args)
	if err != nil {
		return nil, err
	}
	if err := instance.ValidName(f.up.name); err != nil {
		return nil, err
	}
	return bootAndVerify(ctx, out, spec, &f.up, g)
}

func ciDown(ctx context.Context, name string) error {
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	return instance.Down(conn, name)
}

func errorsJoin(a, b error) error {
	if a == nil {
		return b
	}
	return fmt.Errorf("%w; teardown: %v", a, b)
}

// ciExercise proves one exercise; each step is one test case of its suite.
func ciExercise(ctx context.Context, out io.Writer, h labs.Host, env labs.Env, e *labs.Exercise, wrong bool) *verify.Report {
	rep := &verify.Report{Suite: "lab " + e.ID, Started: time.Now()}
	add := func(r verify.CheckResult) bool {
		rep.Results = append(rep.Results, r)
		status := "ok"
		if !r.Passed {
			status = "FAILED: " + r.Message
		}
		fmt.Fprintf(out, "==> %s: %s: %s\n", e.ID, r.Name, status)
		return r.Passed
	}
	script := func(name string, run func() (string, error)) bool {
		t0 := time.Now()
		log, err := run()
		return add(stepResult(name, t0, err, log))
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
	r := verify.CheckResult{Name: "check fails before the solution", Type: "lab", Duration: time.Since(t0), Attempts: 1, Passed: before.Err() != nil}
	if r.Passed {
		r.Message = fmt.Sprintf("%d of %d checks fail on the untouched exercise", before.Failed(), len(before.Results))
	} else {
		r.Message = "every check passes on the untouched exercise: the checks do not test the student's work"
	}
	r.Output = tableText(before)
	add(r)

	if wrong {
		for _, w := range e.WrongAttempts {
			if ctx.Err() != nil {
				return rep
			}
			add(ciWrongAttempt(ctx, h, env, e, w))
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
	add(r)
	return rep
}

// ciWrongAttempt starts the exercise afresh, plays the mistake, and passes
// when the check the attempt names fails (so the student sees its hint).
func ciWrongAttempt(ctx context.Context, h labs.Host, env labs.Env, e *labs.Exercise, w labs.WrongAttempt) (r verify.CheckResult) {
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
	case !strings.Contains(rep.Results[i].Hint, w.Hint):
		r.Message = fmt.Sprintf("check %q failed, but its hint does not say %q", w.Fails, w.Hint)
	case w.Output != "" && !strings.Contains(rep.Results[i].Message+"\n"+rep.Results[i].Output, w.Output):
		r.Message = fmt.Sprintf("check %q failed, but not for this mistake: its output does not say %q", w.Fails, w.Output)
	default:
		r.Passed = true
		r.Message = fmt.Sprintf("check %q fails (%s) with hint: %s", w.Fails, rep.Results[i].Message, rep.Results[i].Hint)
	}
	return r
}

func stepResult(name string, t0 time.Time, err error, log string) verify.CheckResult {
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
