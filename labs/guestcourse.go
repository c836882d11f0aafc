package labs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// GuestCourseDir is where a lab host keeps the course that its student's
// `labs` command runs (labforge-labs): the course's files
// with every exercise's reference solution and wrong attempts taken out.
// The student is root on that host, so what they must not read must not
// be there at all.
const GuestCourseDir = "/usr/local/share/labforge/course"

// guestCourseDir is GuestCourseDir, elsewhere in tests.
var guestCourseDir = GuestCourseDir

// keptOffHost replaces a solution in the host's copy; the loader wants one.
const keptOffHost = "echo 'the reference solution is not kept on the lab host' >&2; exit 1\n"

// GuestFiles are the course's files for GuestCourseDir, by path under it.
func GuestFiles() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "guest/") {
			return err // the student's command is installed apart
		}
		data, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		if path.Base(p) == "exercise.yaml" {
			if data, err = withoutAnswers(data); err != nil {
				return fmt.Errorf("labs/%s: %w", p, err)
			}
		}
		out[p] = data
		return nil
	})
	return out, err
}

// withoutAnswers is an exercise.yaml without its solution and wrong
// attempts (each one the answer to a mistake), as YAML nodes so that the
// rest stays as written.
func withoutAnswers(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	m := doc.Content[0]
	var kept []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch k, v := m.Content[i], m.Content[i+1]; k.Value {
		case "wrongAttempts":
			continue
		case "solution":
			v.Value, v.Style = keptOffHost, yaml.LiteralStyle
			v.HeadComment, v.LineComment, v.FootComment = "", "", ""
		}
		kept = append(kept, m.Content[i], m.Content[i+1])
	}
	m.Content = kept
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// GuestMain is labforge-labs on the lab host, what the student's `labs`
// runs: list and show as the student; check, start and hint as root
// (through sudo), with the course in GuestCourseDir. Its output is that of
// labforge's `lab` commands.
func GuestMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "labs:", err)
		return 1
	}
	if len(args) == 0 {
		return fail(errors.New("usage: labforge-labs list|show|check|start|hint ..."))
	}
	c, err := Load(os.DirFS(guestCourseDir), guestCourseDir)
	if err != nil {
		return fail(fmt.Errorf("the course on this host: %w", err))
	}
	sub, flags, ids := args[0], map[string]string{}, []string(nil)
	known := map[string][]string{"list": {"plain"}, "show": {"width", "markdown"}, "check": {"wait", "all"}}
	for _, a := range args[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			k, v, _ := strings.Cut(name, "=")
			if !slices.Contains(known[sub], k) {
				return fail(fmt.Errorf("%s: unknown flag --%s", sub, k))
			}
			flags[k] = v
			continue
		}
		ids = append(ids, a)
	}
	_, wait := flags["wait"]
	_, all := flags["all"]
	switch sub {
	case "list":
		_, plain := flags["plain"]
		if err := c.WriteList(stdout, plain); err != nil {
			return fail(err)
		}
		return 0
	case "show":
		if len(ids) != 1 {
			return fail(errors.New("usage: labs show ID"))
		}
		e, err := c.Get(ids[0])
		if err != nil {
			return fail(err)
		}
		width, _ := strconv.Atoi(flags["width"])
		_, md := flags["markdown"]
		if err := e.Show(stdout, width, md); err != nil {
			return fail(err)
		}
		return 0
	case "check", "start", "hint":
	default:
		return fail(fmt.Errorf("unknown command %q (list, show, check, start, hint)", sub))
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("check, start and hint run the exercise's scripts and checks as root: use sudo"))
	}
	env := Env{User: os.Getenv("SUDO_USER")}
	if env.User == "root" || env.User == "" {
		env.User = ""
		if u, err := user.LookupId("1000"); err == nil {
			env.User = u.Username // the spec's user is the first account
		}
	}
	h := LocalHost{}
	if sub == "check" {
		list, err := c.Select(ids, all)
		if err != nil {
			return fail(err)
		}
		reps, err := CheckExercises(ctx, stdout, h, env, list, CheckOptions{Wait: wait, Host: "localhost"})
		if err != nil {
			return fail(err)
		}
		if failed := Failed(reps); failed > 0 {
			fmt.Fprintf(stderr, "labs: %d of %d exercises not done yet\n", failed, len(list))
			return 1
		}
		return 0
	}
	if len(ids) != 1 {
		return fail(fmt.Errorf("usage: labs %s ID", sub))
	}
	e, err := c.Get(ids[0])
	if err != nil {
		return fail(err)
	}
	if sub == "hint" {
		fmt.Fprint(stdout, HintText(env.Hint(ctx, h, e)))
		return 0
	}
	log, err := env.Start(ctx, h, e)
	if s := strings.TrimRight(log, "\n"); s != "" {
		fmt.Fprintln(stdout, s)
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s is ready: the instructions are in %s/README.md (labs show %s).\n", e.ID, env.Dir(e), e.ID)
	return 0
}
