package labs

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/labforge/labforge/verify"
)

func TestSelect(t *testing.T) {
	c := course(t)
	all, err := c.Select(nil, true)
	if err != nil || len(all) != len(c.Exercises) {
		t.Fatalf("--all: %d exercises, %v", len(all), err)
	}
	some, err := c.Select([]string{"p2-seccomp", "p1-layers"}, false)
	if err != nil || len(some) != 2 || some[0].ID != "p2-seccomp" || some[1].ID != "p1-layers" {
		t.Fatalf("two ids: %v, %v", some, err)
	}
	for _, tc := range []struct {
		ids  []string
		all  bool
		want string
	}{
		{nil, false, "name an exercise (labforge lab list), or --all"},
		{[]string{"p2-seccomp"}, true, "give exercise ids or --all, not both"},
		{[]string{"p2-seccomp", "p2-nope"}, false, `no exercise "p2-nope"`},
	} {
		if _, err := c.Select(tc.ids, tc.all); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Select(%v, %v): %v, want %q", tc.ids, tc.all, err, tc.want)
		}
	}
}

func TestWrongSet(t *testing.T) {
	c := course(t)
	set, err := c.WrongSet([]string{"all"})
	if err != nil || len(set) != len(c.Exercises) {
		t.Fatalf("all: %d of %d, %v", len(set), len(c.Exercises), err)
	}
	set, err = c.WrongSet([]string{"p2-seccomp"})
	if err != nil || len(set) != 1 || !set["p2-seccomp"] {
		t.Fatalf("one id: %v, %v", set, err)
	}
	if set, err := c.WrongSet(nil); err != nil || len(set) != 0 {
		t.Fatalf("none: %v, %v", set, err)
	}
	if _, err := c.WrongSet([]string{"p2-seccomp", "p2-nope"}); err == nil || !strings.Contains(err.Error(), `no exercise "p2-nope"`) {
		t.Fatalf("an unknown id: %v", err)
	}
}

func TestWriteList(t *testing.T) {
	c := &Course{Exercises: []*Exercise{
		{ID: "p1-a", Part: 1, Objectives: []string{"P1.1", "P1.2"}, Title: "First"},
		{ID: "p2-b", Part: 2, Objectives: []string{"P2.5"}, Title: "Second", Broken: true},
	}}
	var plain bytes.Buffer
	if err := c.WriteList(&plain, true); err != nil {
		t.Fatal(err)
	}
	// The guest's `labs` command splits these lines on tabs.
	if want := "p1-a\t1\tP1.1,P1.2\tFirst\np2-b\t2\tP2.5\tSecond\n"; plain.String() != want {
		t.Errorf("plain:\n%q\nwant\n%q", plain.String(), want)
	}
	var table bytes.Buffer
	if err := c.WriteList(&table, false); err != nil {
		t.Fatal(err)
	}
	want := "ID    PART  OBJECTIVES  TITLE\n" +
		"p1-a  1     P1.1 P1.2   First\n" +
		"p2-b  2     P2.5        Second (starts broken)\n"
	if table.String() != want {
		t.Errorf("table:\n%s\nwant\n%s", table.String(), want)
	}
}

func TestHintText(t *testing.T) {
	got := HintText([]verify.Check{{Name: "a", Hint: "do A"}, {Name: "b", Hint: "do B"}})
	if want := "a\n  do A\nb\n  do B\n"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestCheckExercises(t *testing.T) {
	done, todo := proveExercise(), proveExercise()
	done.ID, done.Title = "t-done", "Done"
	todo.ID, todo.Title = "t-todo", "To do"
	todo.Checks = []verify.Check{{Name: "never", Type: verify.TypeCommand, Command: "echo NEVER", Retries: done.Checks[0].Retries}}
	h := &proveHost{solved: true, failing: "NEVER"}
	var out bytes.Buffer
	reps, err := CheckExercises(context.Background(), &out, h, Env{}, []*Exercise{done, todo}, CheckOptions{Host: "h1"})
	if err != nil || len(reps) != 2 {
		t.Fatalf("%d reports, %v", len(reps), err)
	}
	if reps[0].Err() != nil || reps[1].Err() == nil || reps[0].Host != "h1" || Failed(reps) != 1 {
		t.Fatalf("reports: %v, %v, host %q", reps[0].Err(), reps[1].Err(), reps[0].Host)
	}
	if s := out.String(); !strings.Contains(s, "== t-done: Done\n") || !strings.Contains(s, "== t-todo: To do\n") {
		t.Fatalf("no header above each table:\n%s", s)
	}

	out.Reset()
	if _, err := CheckExercises(context.Background(), &out, h, Env{}, []*Exercise{done}, CheckOptions{}); err != nil || strings.Contains(out.String(), "== ") {
		t.Fatalf("one exercise has no header: %v\n%s", err, out.String())
	}
	out.Reset()
	if _, err := CheckExercises(context.Background(), &out, h, Env{}, []*Exercise{done, todo}, CheckOptions{JSON: true}); err != nil ||
		strings.Contains(out.String(), "== ") || !strings.HasPrefix(out.String(), "{") {
		t.Fatalf("JSON has no headers: %v\n%s", err, out.String())
	}
}

// runCourse is RunCourse of two exercises on h, after a host report.
func runCourse(ctx context.Context, t *testing.T, h Host, first, second *Exercise) ([]*verify.Report, string, error) {
	t.Helper()
	var out bytes.Buffer
	host := &verify.Report{Suite: "host", Results: []verify.CheckResult{{Name: "boots", Passed: true}}}
	reps, err := RunCourse(ctx, &out, RunOptions{Host: h, HostName: "ci", Course: course(t),
		Exercises: []*Exercise{first, second}, Wrong: map[string]bool{second.ID: true}, Self: []byte("labforge"),
		Reports: []*verify.Report{host}})
	if len(reps) == 0 || reps[0] != host {
		t.Fatalf("the host's report does not lead: %v", reps)
	}
	return reps, out.String(), err
}

func suites(reps []*verify.Report) string {
	var s []string
	for _, r := range reps {
		s = append(s, r.Suite)
	}
	return strings.Join(s, ", ")
}

func TestRunCourse(t *testing.T) {
	a, b := proveExercise(), proveExercise()
	a.ID, b.ID = "t-a", "t-b"
	h := &proveHost{}
	reps, out, err := runCourse(context.Background(), t, h, a, b)
	if err != nil || Failed(reps) != 0 {
		t.Fatalf("%v, %d failed\n%s", err, Failed(reps), out)
	}
	if got := suites(reps); got != "host, course install, lab t-a, lab t-b" {
		t.Fatalf("reports: %s", got)
	}
	for _, r := range reps[1:] {
		if r.Host != "ci" {
			t.Errorf("%s: host %q", r.Suite, r.Host)
		}
	}
	if n := strings.Count(strings.Join(h.ran, " "), "mistake"); n != 1 {
		t.Errorf("the wrong attempt ran %d times, want once (t-b's only): %v", n, h.ran)
	}
	if !strings.Contains(out, "\n==> course summary\nPASS  host (1 of 1 steps passed)\nPASS  course install (1 of 1 steps passed)\nPASS  lab t-a (") {
		t.Fatalf("summary:\n%s", out)
	}
}

// A failed install proves nothing: no exercise runs.
func TestRunCourseInstallFails(t *testing.T) {
	h := &proveHost{failing: "tar -x"}
	reps, out, err := runCourse(context.Background(), t, h, proveExercise(), proveExercise())
	if err == nil || !strings.Contains(err.Error(), "install the course") {
		t.Fatalf("error %v", err)
	}
	if got := suites(reps); got != "host, course install" || Failed(reps) != 1 {
		t.Fatalf("reports: %s, %d failed", got, Failed(reps))
	}
	if h.resetRan != 0 || !strings.Contains(out, "FAIL  course install (0 of 1 steps passed)") {
		t.Fatalf("ran %v\n%s", h.ran, out)
	}
}

// A failing exercise fails its report; the ones after it still run.
func TestRunCourseExerciseFails(t *testing.T) {
	bad, good := proveExercise(), proveExercise()
	bad.ID, good.ID = "t-bad", "t-good"
	bad.Solution = "echo BROKEN"
	reps, out, err := runCourse(context.Background(), t, &proveHost{failing: "BROKEN"}, bad, good)
	if err != nil {
		t.Fatalf("a failed proof is not an error: %v", err)
	}
	if got := suites(reps); got != "host, course install, lab t-bad, lab t-good" || Failed(reps) != 1 {
		t.Fatalf("reports: %s, %d failed", got, Failed(reps))
	}
	if !strings.Contains(out, "FAIL  lab t-bad (") || !strings.Contains(out, "PASS  lab t-good (") {
		t.Fatalf("summary:\n%s", out)
	}
}

// cancelHost ends the run's context when a command contains on.
type cancelHost struct {
	*proveHost
	on     string
	cancel context.CancelFunc
}

func (h cancelHost) Run(ctx context.Context, cmd string) (verify.Result, error) {
	if strings.Contains(cmd, h.on) {
		h.cancel()
	}
	return h.proveHost.Run(ctx, cmd)
}

// Ctrl-C during an exercise ends the run after it (Prove resets it).
func TestRunCourseStopsWhenCancelled(t *testing.T) {
	a, b := proveExercise(), proveExercise()
	a.ID, b.ID = "t-a", "t-b"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reps, out, err := runCourse(ctx, t, cancelHost{proveHost: &proveHost{}, on: "SOLVE", cancel: cancel}, a, b)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if got := suites(reps); got != "host, course install, lab t-a" {
		t.Fatalf("reports: %s", got)
	}
	if !strings.Contains(out, "==> course summary") {
		t.Fatalf("no summary after Ctrl-C:\n%s", out)
	}
}
