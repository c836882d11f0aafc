package labs

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/labforge/labforge/verify"
)

func course(t *testing.T) *Course {
	t.Helper()
	c, err := Default()
	if err != nil {
		t.Fatalf("the embedded course does not load: %v", err)
	}
	return c
}

func TestCourseLoads(t *testing.T) {
	c := course(t)
	if len(c.Exercises) < 15 {
		t.Fatalf("%d exercises", len(c.Exercises))
	}
	broken, wrong := 0, 0
	for _, e := range c.Exercises {
		if e.Broken {
			broken++
		}
		wrong += len(e.WrongAttempts)
		if len(e.Checks) == 0 {
			t.Errorf("%s has no checks", e.ID)
		}
	}
	if broken < 2 {
		t.Errorf("%d exercises start broken, want at least 2", broken)
	}
	// Issue 4, acceptance 3: at least 5 mistakes, each caught with its hint.
	if wrong < 5 {
		t.Errorf("%d wrong attempts, want at least 5", wrong)
	}
}

// The README's map and the exercises' objectives must agree, and every
// objective must be covered.
func TestObjectiveMap(t *testing.T) {
	c := course(t)
	if len(c.Map) != len(Objectives) {
		t.Errorf("the map has %d objectives, the course %d", len(c.Map), len(Objectives))
	}
	if err := c.CheckMap(); err != nil {
		t.Fatal(err)
	}
	for _, o := range Objectives {
		if len(c.Covering(o.ID)) == 0 {
			t.Errorf("%s unmapped", o.ID)
		}
	}
	// Each row names the checks that prove its objective.
	readme, err := embedded.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(string(readme), "\n") {
		if r := mapRow.FindStringSubmatch(strings.TrimSpace(l)); r != nil {
			rows[r[1]] = l
		}
	}
	for _, o := range Objectives {
		n := 0
		for _, e := range c.Exercises {
			for _, name := range e.ChecksFor(o.ID) {
				n++
				if !strings.Contains(rows[o.ID], `"`+name+`"`) {
					t.Errorf("the map's row of %s does not name its check %q", o.ID, name)
				}
			}
		}
		if n == 0 {
			t.Errorf("no check proves %s", o.ID)
		}
	}

	// A map that forgets an objective, or names the wrong exercise, fails.
	bad := &Course{Exercises: c.Exercises, Map: map[string][]string{}}
	for k, v := range c.Map {
		bad.Map[k] = v
	}
	delete(bad.Map, "P2.5")
	bad.Map["P1.3"] = []string{"p2-seccomp"}
	err = bad.CheckMap()
	if err == nil || !strings.Contains(err.Error(), "P2.5 is missing from the map") || !strings.Contains(err.Error(), "P1.3: the map says p2-seccomp, the exercises say p1-trace-run") {
		t.Fatalf("CheckMap: %v", err)
	}
	// An objective no exercise covers is named.
	none := &Course{Map: map[string][]string{}}
	if err := none.CheckMap(); err == nil || !strings.Contains(err.Error(), "P1.1 is covered by no exercise") {
		t.Fatalf("CheckMap with no exercises: %v", err)
	}
}

func TestParseMap(t *testing.T) {
	m, err := ParseMap("README.md", "| objective | exercises |\n| --- | --- |\n| P1.1 things | `a`, `b` (starts broken) |\n| P2.12 more | `c` |\n")
	if err != nil || strings.Join(m["P1.1"], ",") != "a,b" || strings.Join(m["P2.12"], ",") != "c" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := ParseMap("README.md", "| P1.1 x | `a` |\n| P1.1 y | `b` |\n"); err == nil || !strings.Contains(err.Error(), "README.md:2: P1.1: objective mapped twice") {
		t.Fatalf("duplicate row: %v", err)
	}
}

const goodExercise = `id: p1-x
title: X
part: 1
objectives: [P1.1]
setup: "true"
solution: "true"
checks:
  - name: c
    command: "true"
    hint: look
    pointer: where
`

// Every loader error names the file, the line and the field.
func TestLoaderErrors(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodExercise, old, new, 1) }
	cases := []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"unknown field", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("title: X\n", "title: X\ncolour: red\n"))}},
			"labs/part1/p1-x/exercise.yaml:3: colour: unknown field"},
		{"unknown objective", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("[P1.1]", "[P1.1, P3.1]"))}},
			`labs/part1/p1-x/exercise.yaml:4: objectives[1]: unknown objective "P3.1"`},
		{"check without a hint", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("    hint: look\n", ""))}},
			`labs/part1/p1-x/exercise.yaml:8: checks[0].hint: check "c" has no hint`},
		{"check without a pointer", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("    pointer: where\n", ""))}},
			`labs/part1/p1-x/exercise.yaml:8: checks[0].pointer: check "c" needs a pointer`},
		{"check that reads answers itself", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace(`command: "true"`, `command: "cat $LAB_DIR/answers.txt"`))}},
			`labs/part1/p1-x/exercise.yaml:9: checks[0].command: check "c" reads answers.txt itself`},
		{"two objectives, no proves", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("[P1.1]", "[P1.1, P1.2]"))}},
			`labs/part1/p1-x/exercise.yaml:1: proves: an exercise with objectives [P1.1 P1.2] names the checks that prove each`},
		{"one check proves two objectives", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("[P1.1]", "[P1.1, P1.2]\nproves: {P1.1: [c], P1.2: [c]}"))}},
			`proves.P1.2: check "c" already proves P1.1: each objective needs a check of its own`},
		{"misspelt check type", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("command:", "comand:"))}},
			`labs/part1/p1-x/exercise.yaml:9: checks[0].comand: unknown check type or field "comand"`},
		{"check field of another type", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("    hint: look\n", "    hint: look\n    mode: \"0644\"\n"))}},
			`labs/part1/p1-x/exercise.yaml:11: checks[0].mode: not a field of a command check`},
		{"no solution", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("solution: \"true\"\n", ""))}},
			`labs/part1/p1-x/exercise.yaml:1: solution: required`},
		{"wrong part", fstest.MapFS{"part2/p1-x/exercise.yaml": {Data: []byte(goodExercise)}},
			`labs/part2/p1-x/exercise.yaml:3: part: part 1, but the exercise is in part2/`},
		{"wrong attempt names no check", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(goodExercise + "wrongAttempts:\n  - {name: w, script: x, fails: d, hint: look}\n")}},
			`labs/part1/p1-x/exercise.yaml:13: wrongAttempts[0].fails: no check named "d"`},
		{"wrong attempt's hint not in the check's", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(goodExercise + "wrongAttempts:\n  - {name: w, script: x, fails: c, hint: elsewhere}\n")}},
			`labs/part1/p1-x/exercise.yaml:13: wrongAttempts[0].hint: the hint of check "c" does not contain "elsewhere"`},
		{"duplicate ids", fstest.MapFS{
			"part1/p1-x/exercise.yaml": {Data: []byte(goodExercise)}, "part1/p1-x/README.md": {Data: []byte("x")},
			"part1/p1-y/exercise.yaml": {Data: []byte(goodExercise)}, "part1/p1-y/README.md": {Data: []byte("y")}},
			`labs/part1/p1-y/exercise.yaml:1: id: duplicate exercise id "p1-x" (first in labs/part1/p1-x/exercise.yaml)`},
		{"id not its directory", fstest.MapFS{"part1/p1-z/exercise.yaml": {Data: []byte(goodExercise)}, "part1/p1-z/README.md": {Data: []byte("x")}},
			`labs/part1/p1-z/exercise.yaml:1: id: id "p1-x" differs from its directory "p1-z"`},
		{"no instructions", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(goodExercise)}},
			`labs/part1/p1-x/README.md: every exercise needs its instructions`},
		{"bad regexp in a check", fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(replace("    hint: look\n", "    hint: look\n    stdout: \"(\"\n"))}},
			`labs/part1/p1-x/exercise.yaml:11: checks[0].stdout: invalid regular expression`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.files, "labs")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
		})
	}
	good := fstest.MapFS{"part1/p1-x/exercise.yaml": {Data: []byte(goodExercise)}, "part1/p1-x/README.md": {Data: []byte("# X\n")},
		"part1/p1-x/files/a/b.sh": {Data: []byte("echo\n")}}
	c, err := Load(good, "labs")
	if err != nil || len(c.Exercises) != 1 || string(c.Exercises[0].Files["a/b.sh"]) != "echo\n" || c.Exercises[0].Checks[0].Type != verify.TypeCommand {
		t.Fatalf("good course: %+v %v", c, err)
	}
}

// Every script and check parses in the shell that will run it: bash for
// scripts (with the prelude), sh for checks.
func TestScriptsParse(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	c := course(t)
	env := Env{}
	for _, e := range c.Exercises {
		scripts := map[string]string{"setup": e.Setup, "solution": e.Solution, "reset": e.Reset}
		for _, w := range e.WrongAttempts {
			scripts["wrong attempt "+w.Name] = w.Script
		}
		for name, s := range scripts {
			out, err := exec.Command("bash", "-n", "-c", env.prelude(e)+s).CombinedOutput()
			if err != nil {
				t.Errorf("%s: %s: %v\n%s", e.ID, name, err, out)
			}
		}
		for _, ch := range e.Checks {
			if ch.Type != verify.TypeCommand {
				continue
			}
			if out, err := exec.Command("sh", "-n", "-c", ch.Command).CombinedOutput(); err != nil {
				t.Errorf("%s: check %q: %v\n%s", e.ID, ch.Name, err, out)
			}
		}
	}
}

// remoteRef is an image reference that names a registry host
// (NAME.TLD/...), not a path or a file name.
var remoteRef = regexp.MustCompile(`(^|[\s"'=(])([a-z0-9-]+\.)+[a-z]{2,}(:[0-9]+)?/[a-z0-9]`)

// No exercise may need the internet: images come from the lab's registry.
func TestImagesAreLocal(t *testing.T) {
	for _, e := range course(t).Exercises {
		all := e.Setup + e.Solution + e.Reset + e.Instructions
		for _, ch := range e.Checks {
			all += ch.Command
		}
		for _, f := range e.Files {
			all += string(f)
		}
		for _, l := range strings.Split(all, "\n") {
			local := strings.Contains(l, "127.0.0.1") || strings.Contains(l, "localhost") || strings.Contains(l, "CLUSTER-IP") ||
				strings.Contains(l, "$ip") || strings.Contains(l, "kv:6379") || strings.Contains(l, "kv-cache:6379") || strings.Contains(l, "HOST:PORT")
			// A URL, or an image reference whose first part is a host name.
			if !local && (strings.Contains(l, "http://") || strings.Contains(l, "https://") || remoteRef.MatchString(l)) {
				t.Errorf("%s: %q", e.ID, strings.TrimSpace(l))
			}
		}
	}
}

func TestRender(t *testing.T) {
	e, err := course(t).Get("p2-seccomp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Render(60, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("plain rendering has escape sequences")
	}
	for _, want := range []string{"# A seccomp profile that refuses chmod", "## Your task", `"defaultAction": "SCMP_ACT_ALLOW",`, "Objectives: P2.5"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 60+2 { // glamour's margin
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	// A paragraph wrapped in the source comes out re-wrapped, not ragged.
	if strings.Contains(out, "chmod family (chmod, fchmod, fchmodat)\n  fails") && strings.Contains(out, "\n  whole") {
		t.Errorf("list item kept its source line breaks:\n%s", out)
	}
	color, err := e.Render(80, true)
	if err != nil || !strings.Contains(color, "\x1b[") {
		t.Errorf("colour rendering: %v", err)
	}
}

func TestUnwrap(t *testing.T) {
	in := "# T\n\n1. one\n   two\n2. three\n\n```sh\na\n  b\n```\npara\ngraph\n| x |\n| y |\n"
	want := "# T\n\n1. one two\n2. three\n\n```sh\na\n  b\n```\npara graph\n| x |\n| y |\n"
	if got := unwrap(in); got != want {
		t.Fatalf("unwrap:\n%q\nwant\n%q", got, want)
	}
}

// fakeHost records what the course does to a host.
type fakeHost struct {
	cmds  []string
	files map[string]string
	have  string // what the "existing files" probe answers
}

func (f *fakeHost) Run(ctx context.Context, cmd string) (verify.Result, error) {
	f.cmds = append(f.cmds, cmd)
	if strings.Contains(cmd, "[ -e \"$f\" ]") {
		return verify.Result{Stdout: f.have}, nil
	}
	return verify.Result{}, nil
}

func (f *fakeHost) Put(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error {
	f.files[dst] = string(data)
	return nil
}

func TestStartInstallsAndKeepsStudentFiles(t *testing.T) {
	e, err := course(t).Get("p1-layers")
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{files: map[string]string{}, have: "app/Containerfile\n"}
	if _, err := (Env{}).Start(context.Background(), h, e); err != nil {
		t.Fatal(err)
	}
	dir := "/home/student/labs/p1-layers/"
	if _, ok := h.files[dir+"app/Containerfile"]; ok {
		t.Error("start overwrote the student's Containerfile")
	}
	if _, ok := h.files[dir+"app/src/main.sh"]; !ok {
		t.Errorf("starter file not installed: %v", h.files)
	}
	if h.files[dir+"README.md"] != e.Markdown() {
		t.Error("instructions not installed")
	}
	last := h.cmds[len(h.cmds)-1]
	if !strings.Contains(last, "bash -eu -c") || !strings.Contains(last, "LAB_DIR=") || !strings.Contains(last, "podman image exists") {
		t.Errorf("setup command: %s", last)
	}

	c := course(t)
	h = &fakeHost{files: map[string]string{}}
	if err := Install(context.Background(), h, c, Env{}, []byte("binary")); err != nil {
		t.Fatal(err)
	}
	if h.files[GuestBinary] != "binary" || len(h.files) != 2 {
		t.Errorf("install wrote %d files, want the binary and the course's archive", len(h.files))
	}
	// The archive, as tar on the host unpacks it from /.
	owners := map[string]string{}
	tr := tar.NewReader(strings.NewReader(h.files[courseTar]))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		owners[hdr.Name] = fmt.Sprintf("%s %o", hdr.Uname, hdr.Mode)
		if hdr.Name == strings.TrimPrefix(GuestCommand, "/") {
			data, _ := io.ReadAll(tr)
			if !strings.HasPrefix(string(data), "#!/bin/sh") {
				t.Errorf("%s is not the guest command", hdr.Name)
			}
		}
	}
	for name, want := range map[string]string{
		"usr/local/bin/labs":                        "root 755",
		"home/student/labs/":                        "student 755",
		"home/student/labs/README.md":               "student 644",
		"home/student/labs/p2-seccomp/":             "student 755",
		"home/student/labs/p2-seccomp/README.md":    "student 644",
		"home/student/labs/p1-daemon-map/README.md": "student 644",
	} {
		if owners[name] != want {
			t.Errorf("%s in the archive: %q, want %q", name, owners[name], want)
		}
	}
	hostCopy, err := GuestFiles()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*len(c.Exercises) + 3 + len(hostCopy); len(owners) != want {
		t.Errorf("the archive holds %d entries, want %d", len(owners), want)
	}
	if owners[strings.TrimPrefix(GuestCourseDir, "/")+"/part2/p2-seccomp/exercise.yaml"] != "root 644" {
		t.Errorf("the host's copy of the course is not in the archive")
	}
	if last := h.cmds[len(h.cmds)-1]; !strings.Contains(last, "tar -x -f "+courseTar+" -C /") {
		t.Errorf("install's last command does not unpack the archive: %s", last)
	}
}

// A failing script's error names the exercise, the script and its last words.
func TestScriptError(t *testing.T) {
	e := &Exercise{ID: "p1-x", Setup: "exit 3"}
	_, err := (Env{}).run(context.Background(), LocalHost{}, e, "setup", "echo starting; echo broken >&2; exit 3")
	if _, ok := err.(*ScriptError); !ok || !strings.Contains(err.Error(), "p1-x: setup script failed (exit 3): starting | broken") {
		t.Fatalf("%v", err)
	}
}

// CheckMap compares the README's map with the exercises' own objectives:
// every objective must be mapped to at least one exercise, and the map
// must name exactly the exercises that list the objective.
func (c *Course) CheckMap() error {
	var problems []string
	for _, o := range Objectives {
		mapped, ok := c.Map[o.ID]
		covering := c.Covering(o.ID)
		switch {
		case len(covering) == 0:
			problems = append(problems, fmt.Sprintf("%s is covered by no exercise", o.ID))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is missing from the map (exercises: %s)", o.ID, strings.Join(covering, ", ")))
		case !sameSet(mapped, covering):
			problems = append(problems, fmt.Sprintf("%s: the map says %s, the exercises say %s", o.ID, strings.Join(mapped, ", "), strings.Join(covering, ", ")))
		}
	}
	for o := range c.Map {
		if !knownObjective(o) {
			problems = append(problems, fmt.Sprintf("the map has unknown objective %s", o))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("labs/README.md objective map: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Covering returns the ids of the exercises that cover objective.
func (c *Course) Covering(objective string) []string {
	var ids []string
	for _, e := range c.Exercises {
		if slices.Contains(e.Objectives, objective) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// expect (check.sh) compares the student's answer with what the host
// shows in each of its modes, and never prints the wanted value: run with
// the real sh, against answers.txt files of known content.
func TestExpectNeverPrintsWant(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		answers, expect string
		pass            bool
		says            string
	}{
		{"k = v4lue-right\n", "expect k exact v4lue-right", true, "k=v4lue-right: right"},
		{"k=wrong\n", "expect k exact v4lue-right", false, "k=wrong: not what this host shows"},
		{"k=old\nk=v4lue-right\n", "expect k exact v4lue-right", true, "right"},
		{"", "expect k exact v4lue-right", false, "k: no answer yet in ~/labs/t-x/answers.txt"},
		{"id=0123456789ab\n", "expect id id 0123456789abcdef0123", true, "right"},
		{"id=0123\n", "expect id id 0123456789abcdef0123", false, "too short"},
		{"p=/sys/fs/cgroup/a/\n", `expect p path /sys/fs/cgroup/a/b /sys/fs/cgroup/a`, true, "right"},
		{"s=/run/c.sock\n", "expect s socket unix:///run/c.sock", true, "right"},
		{"w=net, pid\n", `expect w words " pid net"`, true, "right"},
		{"w=net\n", `expect w words " pid net"`, false, "not what this host shows"},
	}
	for _, c := range cases {
		if err := os.WriteFile(filepath.Join(dir, "answers.txt"), []byte(c.answers), 0o644); err != nil {
			t.Fatal(err)
		}
		script := "LAB_ID=t-x\nLAB_HOME=/home/s\nLAB_DIR=" + dir + "\n" + checkSh + "\n" + c.expect
		out, err := exec.Command("sh", "-c", script).CombinedOutput()
		if (err == nil) != c.pass || !strings.Contains(string(out), c.says) {
			t.Errorf("%s with %q: %v %q; want pass %v, saying %q", c.expect, c.answers, err, out, c.pass, c.says)
		}
		if !c.pass {
			for _, w := range []string{"v4lue-right", "0123456789abcdef", "/sys/fs/cgroup/a/b", "unix://", "pid"} {
				if strings.Contains(c.expect, w) && strings.Contains(string(out), w) && !strings.Contains(c.answers, w) {
					t.Errorf("%s with %q printed the wanted %q: %q", c.expect, c.answers, w, out)
				}
			}
		}
	}
}

// The loader refuses a check that could show its answer.
func TestAnswerLeak(t *testing.T) {
	for cmd, want := range map[string]string{
		"want=$(id -u)\necho \"uid $want\"\nexpect uid exact \"$want\"":                 "prints $want",
		"cg=$(x)\necho \"in ${cg}\"; expect cgroup path \"$cg\" \"$(dirname \"$cg\")\"": "prints $cg",
		"got=$(sed -n 's/k=//p' $LAB_DIR/answers.txt)":                                  "reads answers.txt itself",
		"want=$(id -u)\necho \"uid of the process\"\nexpect uid exact \"$want\"":        "",
		"ref=$(answer reference)\necho \"reference: $ref\"":                             "",
	} {
		if got := answerLeak(cmd); !strings.Contains(got, want) || (want == "") != (got == "") {
			t.Errorf("answerLeak(%q) = %q, want %q", cmd, got, want)
		}
	}
}
