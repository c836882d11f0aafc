package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
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
	o := labs.RunOptions{HostName: f.on}
	if o.Course, err = course(); err != nil {
		return err
	}
	if o.Exercises, err = o.Course.Select(f.only, len(f.only) == 0); err != nil {
		return err
	}
	if o.Wrong, err = o.Course.WrongSet(f.wrongAttempts); err != nil {
		return fmt.Errorf("--wrong-attempts: %w", err)
	}
	if f.on != "" {
		h, err := instance.OpenCourseHost(ctx, f.on)
		if err != nil {
			return err
		}
		defer h.Close()
		o.Host, o.Env = h.Host, h.Env
		if o.Self, err = labs.CourseProgram(); err != nil {
			return err
		}
	} else {
		// No := here: the teardown below sets the function's err.
		var spec *images.Spec
		if spec, err = loadSpec(args); err != nil {
			return err
		}
		if err = instance.ValidName(f.up.name); err != nil {
			return err
		}
		// Before the build and boot: the course goes on at the end.
		if o.Self, err = labs.CourseProgram(); err != nil {
			return err
		}
		var up *labhost.Host
		if up, err = bringUp(ctx, out, spec, &f.up, g); err != nil {
			return err
		}
		defer up.Client.Close()
		if !f.keep {
			// Tear down even after Ctrl-C: a CI host must not outlive its run.
			defer func() {
				switch derr := instance.Destroy(context.WithoutCancel(ctx), f.up.name); {
				case derr == nil:
					fmt.Fprintf(out, "==> %s: down\n", f.up.name)
				case err == nil:
					err = derr
				default:
					err = fmt.Errorf("%w; teardown: %v", err, derr)
				}
			}()
		}
		if up.Report != nil {
			o.Reports = []*verify.Report{up.Report}
		}
		o.Host, o.Env, o.HostName = instance.RootRunner{Client: up.Client}, labs.Env{User: up.Inst.User}, up.Inst.Name
	}
	reps, err := labs.RunCourse(ctx, out, o)
	if jerr := (&reportFlags{junit: f.junit}).writeJUnit(reps...); jerr != nil {
		return jerr
	}
	if err != nil {
		return err
	}
	if failed := labs.Failed(reps); failed > 0 {
		fmt.Fprintf(out, "%d of %d suites failed\n", failed, len(reps))
		return exitError(1)
	}
	return nil
}
