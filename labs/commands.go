package labs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/verify"
)

// What labforge's lab and ci commands do, so that they only read flags
// and print.

// Select is the exercises named by ids, in that order, or every one with
// all; one of the two, not both, as `lab check` takes them.
func (c *Course) Select(ids []string, all bool) ([]*Exercise, error) {
	switch {
	case all && len(ids) > 0:
		return nil, errors.New("give exercise ids or --all, not both")
	case all:
		return c.Exercises, nil
	case len(ids) == 0:
		return nil, errors.New("name an exercise (labforge lab list), or --all")
	}
	list := make([]*Exercise, 0, len(ids))
	for _, id := range ids {
		e, err := c.Get(id)
		if err != nil {
			return nil, err
		}
		list = append(list, e)
	}
	return list, nil
}

// WrongSet is the ids of the exercises whose wrong attempts a proof plays
// too: those in ids, or every exercise for "all".
func (c *Course) WrongSet(ids []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, id := range ids {
		if id == "all" {
			for _, e := range c.Exercises {
				set[e.ID] = true
			}
			continue
		}
		if _, err := c.Get(id); err != nil {
			return nil, err
		}
		set[id] = true
	}
	return set, nil
}

// WriteList prints the exercises with the objectives they cover: a table,
// or with plain one tab-separated line each and no header, which the
// guest's `labs` command reads.
func (c *Course) WriteList(out io.Writer, plain bool) error {
	if plain {
		for _, e := range c.Exercises {
			if _, err := fmt.Fprintf(out, "%s\t%d\t%s\t%s\n", e.ID, e.Part, strings.Join(e.Objectives, ","), e.Title); err != nil {
				return err
			}
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
}

// Show prints e's instructions: the Markdown source with markdown, else
// rendered at width columns (0: the terminal's, at most 100, or 80), with
// colour when out is a terminal.
func (e *Exercise) Show(out io.Writer, width int, markdown bool) error {
	if markdown {
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
}

// HintText is what `lab hint` prints of Env.Hint: each check's name and,
// indented under it, its hint.
func HintText(checks []verify.Check) string {
	var b strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&b, "%s\n  %s\n", c.Name, c.Hint)
	}
	return b.String()
}

// CourseProgram is the course's program for lab hosts (labforge-labs,
// beside labforge), which Install puts on the host for the student's
// `labs` command.
func CourseProgram() ([]byte, error) {
	p := paths.CourseProgram()
	if p == "" {
		return nil, errors.New("labforge-labs, the course's program for lab hosts, is not beside labforge (scripts/install builds it into bin/; or set LABFORGE_COURSE_PROGRAM)")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read the course's program: %w", err)
	}
	return b, nil
}

// CheckOptions say how CheckExercises checks and prints.
type CheckOptions struct {
	Wait bool   // retry each check until its timeout instead of once
	JSON bool   // print each report as JSON instead of a table
	Host string // the reports' host
}

// CheckExercises checks each exercise of list in turn (Env.Check) and
// prints its report, under an "== ID: Title" line when there are several
// tables. It returns the reports; an error only when one cannot be printed.
func CheckExercises(ctx context.Context, out io.Writer, h Host, env Env, list []*Exercise, o CheckOptions) ([]*verify.Report, error) {
	var reps []*verify.Report
	for _, e := range list {
		rep := env.Check(ctx, h, e, o.Wait, verify.Options{})
		rep.Host = o.Host
		reps = append(reps, rep)
		if len(list) > 1 && !o.JSON {
			fmt.Fprintf(out, "== %s: %s\n", e.ID, e.Title)
		}
		write := verify.WriteTable
		if o.JSON {
			write = verify.WriteJSON
		}
		if err := write(out, rep); err != nil {
			return reps, err
		}
	}
	return reps, nil
}

// Failed counts the reports with a failed check or step.
func Failed(reps []*verify.Report) int {
	n := 0
	for _, r := range reps {
		if r.Failed() > 0 {
			n++
		}
	}
	return n
}

// RunOptions say which host RunCourse proves the course on, and how.
type RunOptions struct {
	Host      Host
	Env       Env
	HostName  string // the reports' host
	Course    *Course
	Exercises []*Exercise     // the ones to prove, in order
	Wrong     map[string]bool // ids of those whose wrong attempts are played too
	Self      []byte          // this labforge, for the student's `labs` command
	// Reports are the run's earlier reports (the host's own verify
	// suite): they lead the summary and the returned reports.
	Reports []*verify.Report
}

// RunCourse installs the course on the host (a step of its own report,
// "course install") and, when that worked, proves each exercise in turn
// (Prove) until ctx ends. It then prints "==> course summary": a PASS or
// FAIL line a report. It returns every report, and the install's error or
// ctx's; a failed proof is in its report, not an error (see Failed).
func RunCourse(ctx context.Context, out io.Writer, o RunOptions) ([]*verify.Report, error) {
	reps := append([]*verify.Report(nil), o.Reports...)
	install := &verify.Report{Suite: "course install", Host: o.HostName, Started: time.Now()}
	t0 := time.Now()
	err := Install(ctx, o.Host, o.Course, o.Env, o.Self)
	install.Results = append(install.Results, StepResult("install the course on the host", t0, err, ""))
	install.Duration = time.Since(install.Started)
	reps = append(reps, install)
	if err == nil {
		for _, e := range o.Exercises {
			if ctx.Err() != nil {
				break
			}
			rep := Prove(ctx, out, o.Host, o.Env, e, o.Wrong[e.ID])
			rep.Host = o.HostName
			reps = append(reps, rep)
		}
	}
	fmt.Fprintln(out, "\n==> course summary")
	for _, r := range reps {
		status := "PASS"
		if r.Failed() > 0 {
			status = "FAIL"
		}
		fmt.Fprintf(out, "%s  %s (%d of %d steps passed)\n", status, r.Suite, r.Passed(), len(r.Results))
	}
	if err != nil {
		return reps, err
	}
	return reps, ctx.Err()
}
