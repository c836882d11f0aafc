package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/labs"
	"github.com/labforge/labforge/verify"
)

// labTarget says which host a lab command works on: a running instance
// over SSH, or (--local, used by the student's `labs` command inside the
// guest) this machine.
type labTarget struct {
	name  string
	local bool
}

func (t *labTarget) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&t.name, "name", "n", "default", "instance name")
	cmd.Flags().BoolVar(&t.local, "local", false, "work on this machine (inside the lab host, as root)")
	_ = cmd.Flags().MarkHidden("local")
}

// open connects to the target; done closes it.
func (t *labTarget) open(ctx context.Context) (h labs.Host, env labs.Env, done func(), err error) {
	if t.local {
		if os.Geteuid() != 0 {
			return nil, env, nil, fmt.Errorf("--local runs the exercise's scripts and checks as root: use sudo")
		}
		return labs.LocalHost{}, env, func() {}, nil
	}
	inst, err := instance.Load(t.name)
	if err != nil {
		return nil, env, nil, err
	}
	client, err := inst.Dial(ctx, time.Minute)
	if err != nil {
		return nil, env, nil, err
	}
	return instance.RootRunner{Client: client}, labs.Env{User: inst.User}, func() { client.Close() }, nil
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
			out := cmd.OutOrStdout()
			if plain {
				// For the guest's `labs` command: one tab-separated line each.
				for _, e := range c.Exercises {
					fmt.Fprintf(out, "%s\t%d\t%s\t%s\n", e.ID, e.Part, strings.Join(e.Objectives, ","), e.Title)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPART\tOBJECTIVES\tTITLE")
			for _, e := range c.Exercises {
				title := e.Title
				if e.Broken {
					title += " (starts broken)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.ID, e.Part, strings.Join(e.Objectives, " "), title)
			}
			return tw.Flush()
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
			out := cmd.OutOrStdout()
			if raw {
				_, err := io.WriteString(out, e.Markdown())
				return err
			}
			tty := false
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				tty = true
				if w, _, err := term.GetSize(int(f.Fd())); err == nil && width == 0 {
					width = min(w, 100)
				}
			}
			if width == 0 {
				width = 80
			}
			s, err := e.Render(width, tty)
			if err != nil {
				return err
			}
			_, err = io.WriteString(out, s)
			return err
		},
	}
	cmd.Flags().IntVar(&width, "width", 0, "wrap at this many columns (default: the terminal's, at most 100, or 80)")
	cmd.Flags().BoolVar(&raw, "markdown", false, "print the Markdown source")
	return cmd
}

func newLabStartCmd() *cobra.Command {
	var t labTarget
	cmd := &cobra.Command{
		Use:   "start ID",
		Short: "Install the course on the host and set an exercise up",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, e, err := exercise(args[0])
			if err != nil {
				return err
			}
			h, env, done, err := t.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			if !t.local {
				self, err := selfBinary()
				if err != nil {
					return err
				}
				if err := labs.Install(cmd.Context(), h, c, env, self); err != nil {
					return err
				}
			}
			log, err := env.Start(cmd.Context(), h, e)
			printScriptOutput(out, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s is ready: the instructions are in %s/README.md on the host (labs show %s there, or labforge lab show %s here).\n",
				e.ID, env.Dir(e), e.ID, e.ID)
			return nil
		},
	}
	t.register(cmd)
	return cmd
}

// selfBinary is this labforge, installed on the host for the student's
// `labs` command.
func selfBinary() ([]byte, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find labforge's own binary: %w", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read labforge's own binary: %w", err)
	}
	return b, nil
}

func printScriptOutput(w io.Writer, s string) {
	if s = strings.TrimRight(s, "\n"); s != "" {
		fmt.Fprintln(w, s)
	}
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
			var list []*labs.Exercise
			switch {
			case all && len(args) > 0:
				return fmt.Errorf("give exercise ids or --all, not both")
			case all:
				list = c.Exercises
			case len(args) == 0:
				return fmt.Errorf("name an exercise (labforge lab list), or --all")
			}
			for _, id := range args {
				e, err := c.Get(id)
				if err != nil {
					return err
				}
				list = append(list, e)
			}
			h, env, done, err := t.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			var reps []*verify.Report
			failed := 0
			for _, e := range list {
				rep := env.Check(cmd.Context(), h, e, wait, verify.Options{})
				rep.Host = t.name
				if t.local {
					rep.Host = "localhost"
				}
				reps = append(reps, rep)
				if len(list) > 1 && !report.json {
					fmt.Fprintf(out, "== %s: %s\n", e.ID, e.Title)
				}
				if err := report.writeOne(out, rep); err != nil {
					return err
				}
				if rep.Err() != nil {
					failed++
				}
			}
			if err := report.writeJUnit(reps...); err != nil {
				return err
			}
			if failed > 0 {
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

func newLabHintCmd() *cobra.Command {
	return newLabScriptCmd("hint ID", "Show what to do for each check of an exercise (recorded: later checks show it too)",
		func(ctx context.Context, env labs.Env, h labs.Host, e *labs.Exercise) (string, error) {
			var b strings.Builder
			for _, c := range env.Hint(ctx, h, e) {
				fmt.Fprintf(&b, "%s\n  %s\n", c.Name, c.Hint)
			}
			return b.String(), nil
		}, "")
}

func newLabSolveCmd() *cobra.Command {
	return newLabScriptCmd("solve ID", "Run an exercise's reference solution (instructors, CI)",
		func(ctx context.Context, env labs.Env, h labs.Host, e *labs.Exercise) (string, error) {
			return env.Solve(ctx, h, e)
		}, "solved: labforge lab check %s -n %s --wait\n")
}

func newLabResetCmd() *cobra.Command {
	return newLabScriptCmd("reset ID", "Undo an exercise: the host as it was before start, the student's files gone",
		func(ctx context.Context, env labs.Env, h labs.Host, e *labs.Exercise) (string, error) {
			return env.Reset(ctx, h, e)
		}, "reset: labforge lab start %s -n %s to begin again\n")
}

// newLabScriptCmd is a command on one exercise of a host: run, then its
// output, then after (a next step, with the exercise id and host name) if any.
func newLabScriptCmd(use, short string, run func(context.Context, labs.Env, labs.Host, *labs.Exercise) (string, error), after string) *cobra.Command {
	var t labTarget
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, e, err := exercise(args[0])
			if err != nil {
				return err
			}
			h, env, done, err := t.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			log, err := run(cmd.Context(), env, h, e)
			printScriptOutput(cmd.OutOrStdout(), log)
			if err != nil {
				return err
			}
			if after != "" {
				fmt.Fprintf(cmd.OutOrStdout(), after, e.ID, t.name)
			}
			return nil
		},
	}
	t.register(cmd)
	return cmd
}
