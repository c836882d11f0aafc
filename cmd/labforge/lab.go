package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/labs"
)

// labTarget says which running instance a lab command works on.
type labTarget struct{ name string }

func (t *labTarget) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.name, "name", "n", "default", "instance name")
}

func course() (*labs.Course, error) {
	c, err := labs.Default()
	if err != nil {
		return nil, fmt.Errorf("course: %w", err)
	}
	return c, nil
}

func exercise(id string) (*labs.Course, *labs.Exercise, error) {
	c, err := course()
	if err != nil {
		return nil, nil, err
	}
	e, err := c.Get(id)
	return c, e, err
}

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "The container internals course: list, show, start, check, solve and reset exercises",
		Long: `lab drives the course's exercises on a running lab host (-n NAME, default
"default"): start installs the student's files and runs the exercise's setup,
check runs its checks and shows a hint for each failure (where to look first;
what to do after repeated failures or hint), solve runs the reference
solution, reset puts the host back as it was before start.`,
	}
	cmd.AddCommand(newLabListCmd(), newLabShowCmd(), newLabStartCmd(), newLabCheckCmd(), newLabHintCmd(), newLabSolveCmd(), newLabResetCmd())
	return cmd
}

func newLabListCmd() *cobra.Command {
	var plain bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the exercises with the objectives they cover",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := course()
			if err != nil {
				return err
			}
			return c.WriteList(cmd.OutOrStdout(), plain)
		},
	}
	cmd.Flags().BoolVar(&plain, "plain", false, "tab-separated, no header")
	_ = cmd.Flags().MarkHidden("plain")
	return cmd
}

func newLabShowCmd() *cobra.Command {
	var width int
	var raw bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show an exercise's instructions, formatted for the terminal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, e, err := exercise(args[0])
			if err != nil {
				return err
			}
			return e.Show(cmd.OutOrStdout(), width, raw)
		},
	}
	cmd.Flags().IntVar(&width, "width", 0, "wrap at this many columns (default: the terminal's, at most 100, or 80)")
	cmd.Flags().BoolVar(&raw, "markdown", false, "print the Markdown source")
	return cmd
}

func newLabCheckCmd() *cobra.Command {
	var t labTarget
	var all, wait bool
	var report reportFlags
	cmd := &cobra.Command{
		Use:   "check ID... | --all",
		Short: "Check the work on exercises, with a hint for each failing check",
		Long: `check runs an exercise's checks on the host (one attempt each; --wait retries
them as written, for pods still starting) and prints a table with a hint under
each failure. --all checks every exercise; --junit FILE writes one JUnit suite
per exercise. It exits non-zero when any check fails.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := course()
			if err != nil {
				return err
			}
			list, err := c.Select(args, all)
			if err != nil {
				return err
			}
			h, err := instance.OpenCourseHost(cmd.Context(), t.name)
			if err != nil {
				return err
			}
			defer h.Close()
			reps, err := labs.CheckExercises(cmd.Context(), cmd.OutOrStdout(), h.Host, h.Env, list, labs.CheckOptions{Wait: wait, JSON: report.json, Host: h.Name})
			if err != nil {
				return err
			}
			if err := report.writeJUnit(reps...); err != nil {
				return err
			}
			if failed := labs.Failed(reps); failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: %d of %d exercises not done yet\n", failed, len(list))
				return exitError(1)
			}
			return nil
		},
	}
	t.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "check every exercise")
	cmd.Flags().BoolVar(&wait, "wait", false, "retry each check until its timeout instead of once")
	report.register(cmd)
	return cmd
}

func newLabStartCmd() *cobra.Command {
	return newLabScriptCmd("start ID", "Install the course on the host and set an exercise up",
		func(ctx context.Context, h *instance.CourseHost, c *labs.Course, e *labs.Exercise) (string, error) {
			return h.Start(ctx, c, e)
		}, func(out io.Writer, h *instance.CourseHost, e *labs.Exercise, _ string) {
			fmt.Fprintf(out, "%s is ready: the instructions are in %s/README.md on the host (labs show %s there, or labforge lab show %s here).\n",
				e.ID, h.Env.Dir(e), e.ID, e.ID)
		})
}

func newLabHintCmd() *cobra.Command {
	return newLabScriptCmd("hint ID", "Show what to do for each check of an exercise (recorded: later checks show it too)",
		func(ctx context.Context, h *instance.CourseHost, _ *labs.Course, e *labs.Exercise) (string, error) {
			return labs.HintText(h.Env.Hint(ctx, h.Host, e)), nil
		}, nil)
}

func newLabSolveCmd() *cobra.Command {
	return newLabScriptCmd("solve ID", "Run an exercise's reference solution (instructors, CI)",
		func(ctx context.Context, h *instance.CourseHost, _ *labs.Course, e *labs.Exercise) (string, error) {
			return h.Env.Solve(ctx, h.Host, e)
		}, func(out io.Writer, _ *instance.CourseHost, e *labs.Exercise, name string) {
			fmt.Fprintf(out, "solved: labforge lab check %s -n %s --wait\n", e.ID, name)
		})
}

func newLabResetCmd() *cobra.Command {
	return newLabScriptCmd("reset ID", "Undo an exercise: the host as it was before start, the student's files gone",
		func(ctx context.Context, h *instance.CourseHost, _ *labs.Course, e *labs.Exercise) (string, error) {
			return h.Env.Reset(ctx, h.Host, e)
		}, func(out io.Writer, _ *instance.CourseHost, e *labs.Exercise, name string) {
			fmt.Fprintf(out, "reset: labforge lab start %s -n %s to begin again\n", e.ID, name)
		})
}

// newLabScriptCmd is a command on one exercise of a host: run, then its
// output, then, when run succeeded, after (the next step, given -n's name).
func newLabScriptCmd(use, short string, run func(context.Context, *instance.CourseHost, *labs.Course, *labs.Exercise) (string, error),
	after func(out io.Writer, h *instance.CourseHost, e *labs.Exercise, name string)) *cobra.Command {
	var t labTarget
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, e, err := exercise(args[0])
			if err != nil {
				return err
			}
			h, err := instance.OpenCourseHost(cmd.Context(), t.name)
			if err != nil {
				return err
			}
			defer h.Close()
			log, err := run(cmd.Context(), h, c, e)
			if log = strings.TrimRight(log, "\n"); log != "" {
				fmt.Fprintln(cmd.OutOrStdout(), log)
			}
			if err == nil && after != nil {
				after(cmd.OutOrStdout(), h, e, t.name)
			}
			return err
		},
	}
	t.register(cmd)
	return cmd
}
