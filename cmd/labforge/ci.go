package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
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
		var up *labhost.Host
		if up, err = ciUp(ctx, out, args, f, g); err != nil {
			return err
		}
		defer up.Client.Close()
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
		if up.Report != nil {
			reps = append(reps, up.Report)
		}
		h = instance.RootRunner{Client: up.Client}
		env = labs.Env{User: up.Inst.User}
		hostName = up.Inst.Name
	}

	installRep := &verify.Report{Suite: "course install", Host: hostName, Started: time.Now()}
	t0 := time.Now()
	ierr := labs.Install(ctx, h, c, env, self)
	installRep.Results = append(installRep.Results, labs.StepResult("install the course on the host", t0, ierr, ""))
	installRep.Duration = time.Since(installRep.Started)
	reps = append(reps, installRep)
	if ierr == nil {
		for _, e := range list {
			if ctx.Err() != nil {
				break
			}
			rep := labs.Prove(ctx, out, h, env, e, wrong[e.ID])
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
func ciUp(ctx context.Context, out io.Writer, args []string, f *ciFlags, g *globalFlags) (*labhost.Host, error) {
	spec, err := loadSpec(args)
	if err != nil {
		return nil, err
	}
	if err := instance.ValidName(f.up.name); err != nil {
		return nil, err
	}
	return bringUp(ctx, out, spec, &f.up, g)
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
