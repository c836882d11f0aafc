// Package labs is the container internals course: exercises that a student
// does on the lab host, each with instructions, an idempotent setup, checks
// run by the verify engine and a reference solution, all embedded in the
// labforge binary so that the host and the guest run the same course.
//
// An exercise lives in labs/partN/ID/:
//
//	exercise.yaml   id, title, part, objectives, setup, solution, reset,
//	                defaults and checks (verify checks, each with a hint),
//	                wrongAttempts (a wrong answer and the hint it must get)
//	README.md       the instructions, shown by `labforge lab show ID` and
//	                installed in the student's ~/labs/ID/
//	files/          optional starter files, copied into ~/labs/ID/ at start
//	                unless the student already has a file of that name
package labs

import (
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labforge/labforge/internal/yamlx"
	"github.com/labforge/labforge/verify"
)

//go:embed README.md all:part1 all:part2 guest check.sh
var embedded embed.FS

// Objective is one learning objective of the course.
type Objective struct {
	ID    string // P1.1 ... P2.12
	Title string
}

// Objectives is the course outline: every one needs an exercise.
var Objectives = []Objective{
	{"P1.1", "how the kernel, services and daemons cooperate to create and run containers"},
	{"P1.2", "how that architecture affects security and performance"},
	{"P1.3", "the API calls between daemons and the kernel that create an isolated process"},
	{"P1.4", "the vocabulary of repositories, image layers, tags and registry servers"},
	{"P1.5", "what the Open Containers Initiative standardises and why it matters for images"},
	{"P1.6", "base images versus multi-layered images"},
	{"P1.7", "the full URL of an image in a repository"},
	{"P1.8", "everything that is inside an image"},
	{"P1.9", "using layers well in a design"},
	{"P2.1", "the interactions of the main daemons and APIs in a container environment"},
	{"P2.2", "system calls and kernel namespaces"},
	{"P2.3", "how SELinux and sVirt confine containers"},
	{"P2.4", "how cgroups limit containers"},
	{"P2.5", "restricting a container's system calls with SECCOMP"},
	{"P2.6", "container storage compared with ordinary Linux storage"},
	{"P2.7", "container networking and network namespaces"},
	{"P2.8", "troubleshooting an Open vSwitch setup under Kubernetes"},
	{"P2.9", "multi-container applications"},
	{"P2.10", "orchestration versus application definition"},
	{"P2.11", "scaling principles"},
	{"P2.12", "troubleshooting containers in a cluster"},
}

func knownObjective(id string) bool {
	return slices.ContainsFunc(Objectives, func(o Objective) bool { return o.ID == id })
}

// Exercise is one lab exercise.
type Exercise struct {
	ID         string   `yaml:"id"`
	Title      string   `yaml:"title"`
	Part       int      `yaml:"part"`
	Objectives []string `yaml:"objectives"`
	// Broken says that setup leaves something broken for the student to
	// repair (the list shows it).
	Broken bool `yaml:"broken"`
	// Setup, Solution and Reset are bash scripts run as root on the host.
	// Setup must be idempotent: a student may start an exercise twice.
	// Reset undoes setup and the student's work (optional: the student's
	// ~/labs/ID is always removed).
	Setup    string `yaml:"setup"`
	Solution string `yaml:"solution"`
	Reset    string `yaml:"reset"`
	// Timeout bounds each script (default 10m).
	Timeout verify.Duration `yaml:"timeout"`
	// Defaults and Checks are a verify suite's, written at the top level.
	Defaults verify.Defaults `yaml:"defaults"`
	Checks   []verify.Check  `yaml:"checks"`
	// WrongAttempts are plausible mistakes, each with the check that must
	// catch it and words its hint must contain.
	WrongAttempts []WrongAttempt `yaml:"wrongAttempts"`
	// Proves names, per objective, the checks that prove it; required when
	// the exercise serves more than one, so that each has checks of its
	// own (with one objective, every check proves it).
	Proves map[string][]string `yaml:"proves"`

	// Instructions is README.md beside the exercise.
	Instructions string `yaml:"-"`
	// Files are the starter files, by path under files/.
	Files map[string][]byte `yaml:"-"`
	// Path is the exercise.yaml, as named in errors.
	Path string `yaml:"-"`
}

// WrongAttempt is a mistake a student could make, as a script run as root
// after setup, and what the check must then say.
type WrongAttempt struct {
	Name   string `yaml:"name"`
	Script string `yaml:"script"`
	// Fails names the check that must fail; Hint is text its hint contains.
	Fails string `yaml:"fails"`
	Hint  string `yaml:"hint"`
	// Output, when set, is text the failing check must print: proof that
	// it failed for this mistake, not for a broken host.
	Output string `yaml:"output"`
}

// DefaultScriptTimeout bounds a setup, solution or reset script.
const DefaultScriptTimeout = 10 * time.Minute

// ScriptTimeout is how long each of the exercise's scripts may run.
func (e *Exercise) ScriptTimeout() time.Duration {
	if e.Timeout > 0 {
		return time.Duration(e.Timeout)
	}
	return DefaultScriptTimeout
}

// Suite returns the exercise's checks as a verify suite. Without wait each
// check gets one attempt, which is what a student checking work in
// progress wants; with wait the checks retry as written, for a state that
// is still settling (pods starting after a solution).
func (e *Exercise) Suite(wait bool) *verify.Suite {
	s := &verify.Suite{Name: "lab " + e.ID, Defaults: e.Defaults, Checks: slices.Clone(e.Checks)}
	if !wait {
		zero := 0
		s.Defaults.Retries = &zero
		for i := range s.Checks {
			s.Checks[i].Retries = &zero
		}
	}
	return s
}

// Course is every exercise, in the outline's order.
type Course struct {
	Exercises []*Exercise
	// Map is the objective map parsed from README.md: objective id ->
	// exercise ids, in the order written.
	Map map[string][]string
}

// Get returns the exercise named id.
func (c *Course) Get(id string) (*Exercise, error) {
	for _, e := range c.Exercises {
		if e.ID == id {
			return e, nil
		}
	}
	var ids []string
	for _, e := range c.Exercises {
		ids = append(ids, e.ID)
	}
	return nil, fmt.Errorf("no exercise %q (exercises: %s)", id, strings.Join(ids, ", "))
}

// Default is the course embedded in this binary; it is validated by the
// unit tests, so an error here means a broken build.
//
// It is a function, not a value made at start-up, so that a program that
// never calls it (labforge-labs, which runs the host's copy of the course
// without the solutions) does not carry the embedded course.
func Default() (*Course, error) {
	defaultOnce.Do(func() { defaultCourse, defaultErr = Load(embedded, "labs") })
	return defaultCourse, defaultErr
}

var (
	defaultOnce   sync.Once
	defaultCourse *Course
	defaultErr    error
)

// Guest returns the embedded files installed on the host for the student
// (the `labs` command), by name.
func Guest() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(embedded, "guest", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(embedded, p)
		out[strings.TrimPrefix(p, "guest/")] = data
		return err
	})
	return out, err
}

var (
	idRe   = regexp.MustCompile(`^p[12]-[a-z0-9]+(-[a-z0-9]+)*$`)
	partRe = regexp.MustCompile(`^part([0-9]+)$`)
)

// Load reads the course from fsys: README.md and partN/ID/ directories.
// prefix is prepended to paths in errors, so that they name the file as it
// sits in the repository (labs/part2/p2-seccomp/exercise.yaml).
func Load(fsys fs.FS, prefix string) (*Course, error) {
	c := &Course{}
	parts, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read course: %w", err)
	}
	seen := map[string]string{} // id -> file that defined it
	for _, p := range parts {
		m := partRe.FindStringSubmatch(p.Name())
		if !p.IsDir() || m == nil {
			continue
		}
		part, _ := strconv.Atoi(m[1])
		dirs, err := fs.ReadDir(fsys, p.Name())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path.Join(prefix, p.Name()), err)
		}
		for _, d := range dirs {
			if !d.IsDir() {
				continue
			}
			e, lines, err := loadExercise(fsys, prefix, path.Join(p.Name(), d.Name()), part)
			if err != nil {
				return nil, err
			}
			if first, dup := seen[e.ID]; dup {
				return nil, lines.Errorf(e.Path, "id", "duplicate exercise id %q (first in %s)", e.ID, first)
			}
			seen[e.ID] = e.Path
			// One place per exercise: the directory is named after the id.
			if e.ID != d.Name() {
				return nil, lines.Errorf(e.Path, "id", "id %q differs from its directory %q", e.ID, d.Name())
			}
			c.Exercises = append(c.Exercises, e)
		}
	}
	// The outline's order: by part, then by the first objective each
	// exercise serves (Objectives lists them in the outline's order).
	first := func(e *Exercise) int {
		n := len(Objectives)
		for _, id := range e.Objectives {
			n = min(n, slices.IndexFunc(Objectives, func(o Objective) bool { return o.ID == id }))
		}
		return n
	}
	slices.SortFunc(c.Exercises, func(a, b *Exercise) int {
		if a.Part != b.Part {
			return a.Part - b.Part
		}
		if d := first(a) - first(b); d != 0 {
			return d
		}
		return strings.Compare(a.ID, b.ID)
	})
	if readme, err := fs.ReadFile(fsys, "README.md"); err == nil {
		if c.Map, err = ParseMap(path.Join(prefix, "README.md"), string(readme)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func loadExercise(fsys fs.FS, prefix, dir string, part int) (*Exercise, yamlx.Lines, error) {
	file := path.Join(prefix, dir, "exercise.yaml")
	data, err := fs.ReadFile(fsys, path.Join(dir, "exercise.yaml"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	e := &Exercise{Path: file}
	lines, err := yamlx.Decode(file, data, e)
	if err != nil {
		return nil, nil, verify.ExplainDecodeError(err)
	}
	if err := e.validate(lines, part); err != nil {
		return nil, nil, err
	}
	readme, err := fs.ReadFile(fsys, path.Join(dir, "README.md"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: every exercise needs its instructions: %w", path.Join(prefix, dir, "README.md"), err)
	}
	e.Instructions = string(readme)
	e.Files = map[string][]byte{}
	files := path.Join(dir, "files")
	if _, err := fs.Stat(fsys, files); err == nil {
		err = fs.WalkDir(fsys, files, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			e.Files[strings.TrimPrefix(p, files+"/")] = b
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path.Join(prefix, files), err)
		}
	}
	return e, lines, nil
}

func (e *Exercise) validate(lines yamlx.Lines, dirPart int) error {
	file := e.Path
	at := func(field, format string, args ...any) error {
		err := lines.Errorf(file, field, format, args...).(*yamlx.Error)
		if err.Line == 0 {
			err.Line = 1 // a top-level field left out: point at the document
		}
		return err
	}
	switch {
	case e.ID == "":
		return at("id", "required")
	case !idRe.MatchString(e.ID):
		return at("id", "invalid exercise id %q (want p1-… or p2-…, lower case words joined by -)", e.ID)
	case strings.TrimSpace(e.Title) == "":
		return at("title", "required")
	case e.Part != dirPart:
		return at("part", "part %d, but the exercise is in part%d/", e.Part, dirPart)
	case !strings.HasPrefix(e.ID, fmt.Sprintf("p%d-", e.Part)):
		return at("id", "an exercise of part %d has an id starting p%d-", e.Part, e.Part)
	case len(e.Objectives) == 0:
		return at("objectives", "at least one objective is required (P1.1 … P2.12)")
	case strings.TrimSpace(e.Setup) == "":
		return at("setup", "required (an idempotent script; `true` if there is nothing to set up)")
	case strings.TrimSpace(e.Solution) == "":
		return at("solution", "required: the reference solution proves the exercise can be solved")
	}
	for i, o := range e.Objectives {
		field := fmt.Sprintf("objectives[%d]", i)
		if !knownObjective(o) {
			return at(field, "unknown objective %q (the course has P1.1–P1.9 and P2.1–P2.12)", o)
		}
		if slices.Index(e.Objectives, o) < i {
			return at(field, "objective %q listed twice", o)
		}
	}
	suite := verify.Suite{Name: e.ID, Defaults: e.Defaults, Checks: e.Checks}
	if err := suite.Validate(file, lines); err != nil {
		return err
	}
	e.Checks = suite.Checks // Validate sets each check's type
	for i, c := range e.Checks {
		if strings.TrimSpace(c.Hint) == "" {
			return at(fmt.Sprintf("checks[%d].hint", i), "check %q has no hint: say what the student should look at when it fails", c.Name)
		}
		if strings.TrimSpace(c.Pointer) == "" || c.Pointer == c.Hint {
			return at(fmt.Sprintf("checks[%d].pointer", i), "check %q needs a pointer (where to look) apart from its hint (what to do): hints come in stages", c.Name)
		}
		if c.Type != verify.TypeCommand {
			return at(fmt.Sprintf("checks[%d]", i), "check %q: a course's checks are command checks (they run after check.sh's helpers)", c.Name)
		}
		if err := answerLeak(c.Command); err != "" {
			return at(fmt.Sprintf("checks[%d].command", i), "check %q %s", c.Name, err)
		}
	}
	if err := e.validateProves(at); err != nil {
		return err
	}
	for i, w := range e.WrongAttempts {
		p := fmt.Sprintf("wrongAttempts[%d]", i)
		switch {
		case strings.TrimSpace(w.Name) == "":
			return at(p+".name", "required")
		case strings.TrimSpace(w.Script) == "":
			return at(p+".script", "required")
		case strings.TrimSpace(w.Hint) == "":
			return at(p+".hint", "required: the words the student must be shown")
		}
		j := slices.IndexFunc(e.Checks, func(c verify.Check) bool { return c.Name == w.Fails })
		if j < 0 {
			return at(p+".fails", "no check named %q", w.Fails)
		}
		if !strings.Contains(e.Checks[j].Hint, w.Hint) {
			return at(p+".hint", "the hint of check %q does not contain %q", w.Fails, w.Hint)
		}
	}
	return nil
}

// validateProves: with several objectives, each has its own checks.
func (e *Exercise) validateProves(at func(field, format string, args ...any) error) error {
	if len(e.Objectives) > 1 && len(e.Proves) == 0 {
		return at("proves", "an exercise with objectives %v names the checks that prove each", e.Objectives)
	}
	owner := map[string]string{}
	for _, o := range slices.Sorted(maps.Keys(e.Proves)) {
		if !slices.Contains(e.Objectives, o) {
			return at("proves."+o, "not one of the exercise's objectives %v", e.Objectives)
		}
		if len(e.Proves[o]) == 0 {
			return at("proves."+o, "no check proves it")
		}
		for _, name := range e.Proves[o] {
			if !slices.ContainsFunc(e.Checks, func(c verify.Check) bool { return c.Name == name }) {
				return at("proves."+o, "no check named %q", name)
			}
			if prev, ok := owner[name]; ok {
				return at("proves."+o, "check %q already proves %s: each objective needs a check of its own", name, prev)
			}
			owner[name] = o
		}
	}
	for _, o := range e.Objectives {
		if len(e.Objectives) > 1 && len(e.Proves[o]) == 0 {
			return at("proves", "no check proves %s", o)
		}
	}
	return nil
}

// ChecksFor names the checks of e that prove objective o.
func (e *Exercise) ChecksFor(o string) []string {
	if len(e.Proves) > 0 {
		return e.Proves[o]
	}
	var out []string
	if slices.Contains(e.Objectives, o) {
		for _, c := range e.Checks {
			out = append(out, c.Name)
		}
	}
	return out
}

var (
	// expectRe finds `expect KEY MODE WANT...` and the variables in WANT.
	expectRe = regexp.MustCompile(`\bexpect\s+\S+\s+\S+\s+([^|;&\n]*)`)
	varRe    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	printRe  = regexp.MustCompile(`\b(echo|printf)\b[^|;&\n]*`)
)

// answerLeak says how a check's command could show the student what it
// compares their answers with, or "": it must read answers.txt only
// through check.sh (answer, expect), and print no variable it hands to
// expect as the wanted value.
func answerLeak(cmd string) string {
	if strings.Contains(cmd, "answers.txt") {
		return "reads answers.txt itself: use answer KEY or expect KEY MODE WANT (check.sh), which never print the wanted value"
	}
	wanted := map[string]bool{}
	for _, m := range expectRe.FindAllStringSubmatch(cmd, -1) {
		for _, v := range varRe.FindAllStringSubmatch(m[1], -1) {
			wanted[v[1]] = true
		}
	}
	for _, line := range strings.Split(cmd, "\n") {
		for _, p := range printRe.FindAllString(line, -1) {
			for _, v := range varRe.FindAllStringSubmatch(p, -1) {
				if wanted[v[1]] {
					return fmt.Sprintf("prints $%s, which it compares the student's answer with: a failing check must not hand out its answer", v[1])
				}
			}
		}
	}
	return ""
}

// mapRow is a row of the objective map: | P1.1 title | `id`, `id` |
var mapRow = regexp.MustCompile("^\\|\\s*(P[0-9]+\\.[0-9]+)\\b[^|]*\\|([^|]*)\\|")
var mapID = regexp.MustCompile("`([a-z0-9-]+)`")

// ParseMap reads the objective map of the course README: every table row
// whose first cell starts with an objective id, with the exercise ids in
// backquotes in its second cell.
func ParseMap(file, text string) (map[string][]string, error) {
	m := map[string][]string{}
	for n, line := range strings.Split(text, "\n") {
		r := mapRow.FindStringSubmatch(strings.TrimSpace(line))
		if r == nil {
			continue
		}
		if _, dup := m[r[1]]; dup {
			return nil, &yamlx.Error{File: file, Line: n + 1, Field: r[1], Msg: "objective mapped twice"}
		}
		var ids []string
		for _, id := range mapID.FindAllStringSubmatch(r[2], -1) {
			ids = append(ids, id[1])
		}
		m[r[1]] = ids
	}
	return m, nil
}
