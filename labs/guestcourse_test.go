package labs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// The lab host's copy of the course carries no reference solution and no
// wrong attempt (the student is root there), and still loads as the course.
func TestHostCopyHasNoAnswers(t *testing.T) {
	c := course(t)
	files, err := GuestFiles()
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	fsys := fstest.MapFS{}
	for name, data := range files {
		all.Write(data)
		fsys[name] = &fstest.MapFile{Data: data}
	}
	// What the host must have anyway (every exercise's setup, reset,
	// checks, instructions and starter files): a secret may repeat a line.
	var open strings.Builder
	for _, e := range c.Exercises {
		open.WriteString(e.Setup + e.Reset + e.Instructions)
		for _, ch := range e.Checks {
			open.WriteString(ch.Command + ch.Hint + ch.Pointer)
		}
		for _, f := range e.Files {
			open.Write(f)
		}
	}
	for _, e := range c.Exercises {
		leaks := func(what, script string) {
			for _, l := range distinctLines(script) {
				if strings.Contains(all.String(), l) && !strings.Contains(open.String(), l) {
					t.Errorf("%s: %s's line %q is on the host", e.ID, what, l)
				}
			}
		}
		leaks("the solution", e.Solution)
		for _, w := range e.WrongAttempts {
			leaks("wrong attempt "+w.Name, w.Script)
		}
	}
	host, err := Load(fsys, "host")
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Exercises) != len(c.Exercises) {
		t.Fatalf("the host's copy has %d exercises, want %d", len(host.Exercises), len(c.Exercises))
	}
	for i, e := range host.Exercises {
		if e.ID != c.Exercises[i].ID || len(e.Checks) != len(c.Exercises[i].Checks) || e.Solution != keptOffHost || len(e.WrongAttempts) != 0 {
			t.Errorf("%s on the host: %d checks, solution %q, %d wrong attempts", e.ID, len(e.Checks), e.Solution, len(e.WrongAttempts))
		}
	}
}

// distinctLines are a script's lines long enough to give an answer away.
func distinctLines(script string) []string {
	var out []string
	for _, l := range strings.Split(script, "\n") {
		if l = strings.TrimSpace(l); len(l) >= 20 && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// The course's program lists and shows exercises from the host's copy, as
// the student; check, start and hint want root.
func TestGuestMain(t *testing.T) {
	dir := t.TempDir()
	files, err := GuestFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	guestCourseDir = dir
	t.Cleanup(func() { guestCourseDir = GuestCourseDir })
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := GuestMain(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	var want bytes.Buffer
	if err := course(t).WriteList(&want, true); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run("list", "--plain"); code != 0 || out != want.String() {
		t.Errorf("list --plain: exit %d, %s\n%s", code, stderr, out)
	}
	if code, out, _ := run("show", "p2-seccomp", "--markdown"); code != 0 || !strings.Contains(out, "labs start p2-seccomp") {
		t.Errorf("show: exit %d:\n%s", code, out)
	}
	if code, _, stderr := run("show", "p9-nope"); code != 1 || !strings.Contains(stderr, "p9-nope") {
		t.Errorf("show of an unknown exercise: exit %d, %s", code, stderr)
	}
	if code, _, stderr := run("solve", "p2-seccomp"); code != 1 || !strings.Contains(stderr, `unknown command "solve"`) {
		t.Errorf("solve: exit %d, %s", code, stderr)
	}
	if code, _, stderr := run("check", "--nope", "p2-seccomp"); code != 1 || !strings.Contains(stderr, "unknown flag --nope") {
		t.Errorf("an unknown flag: exit %d, %s", code, stderr)
	}
	if os.Geteuid() != 0 {
		if code, _, stderr := run("check", "p2-seccomp"); code != 1 || !strings.Contains(stderr, "use sudo") {
			t.Errorf("check as a user: exit %d, %s", code, stderr)
		}
	}
}

// On a build guest the course goes in without any student's files.
func TestInstallInImage(t *testing.T) {
	h := &fakeHost{files: map[string]string{}}
	if err := InstallInImage(context.Background(), h, course(t), []byte("binary")); err != nil {
		t.Fatal(err)
	}
	archive := h.files[courseTar]
	if h.files[GuestBinary] != "binary" || !strings.Contains(archive, strings.TrimPrefix(GuestCourseDir, "/")+"/part1/") || strings.Contains(archive, "home/") {
		t.Fatalf("install in an image wrote %d files; archive has the course %v, a home %v", len(h.files),
			strings.Contains(archive, "course/part1/"), strings.Contains(archive, "home/"))
	}
}
