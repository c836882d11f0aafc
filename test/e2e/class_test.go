package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClass makes a class of 3 linked clones on this hypervisor, verifies
// them (one JUnit suite per host plus the fingerprint suite), resets one
// (a file written before is gone after), and destroys the class.
func TestClass(t *testing.T) {
	needRoot(t)
	const name = "e2e-cls"
	labforge(t, "class", "destroy", name)
	t.Cleanup(func() { labforge(t, "class", "destroy", name) })

	create := mustLabforge(t, "class", "create", name, "--spec", baseSpec, "--students", "3", "--parallel", "3")
	t.Logf("class create: %s\n%s", create.took.Round(time.Second), create.stdout)
	if m := regexp.MustCompile(`clones take (.+) in all on top of the (.+) golden image`).FindStringSubmatch(create.stdout); m != nil {
		t.Logf("FIGURE class of 3: created in %s; clones %s in all over a %s image", create.took.Round(time.Second), m[1], m[2])
	}
	roster, err := os.ReadFile(filepath.Join(stateDir(), "classes", name, "roster.csv"))
	if err != nil || strings.Count(string(roster), "\n") != 4 {
		t.Fatalf("roster.csv: %v\n%s", err, roster)
	}

	junitPath := filepath.Join(t.TempDir(), "class.xml")
	v := mustLabforge(t, "class", "verify", name, "--junit", junitPath)
	t.Logf("class verify: %s", v.took.Round(time.Second))
	suites := readJUnit(t, junitPath).Suites
	if len(suites) != 4 {
		t.Fatalf("want 3 host suites and the fingerprint suite, got %d", len(suites))
	}
	for _, s := range suites {
		if s.Failures != 0 || s.Tests == 0 {
			t.Fatalf("suite %s: %d tests, %d failures", s.Name, s.Tests, s.Failures)
		}
	}

	resetStudents(t, name, name+"-s02")

	mustLabforge(t, "class", "destroy", name)
	if d := domains(t); strings.Contains(d, "labforge-"+name) {
		t.Fatalf("domains left after destroy:\n%s", d)
	}
	left, _ := filepath.Glob(filepath.Join(stateDir(), "instances", name+"-*"))
	if _, err := os.Stat(filepath.Join(stateDir(), "classes", name)); !os.IsNotExist(err) || len(left) > 0 {
		t.Fatalf("files left after destroy: %v %v", err, left)
	}
}

func stateDir() string {
	if d := os.Getenv("LABFORGE_STATE"); d != "" {
		return d
	}
	return "/var/lib/labforge"
}

// resetStudents writes a file on each student's host, resets them, and
// fails if the file survived.
func resetStudents(t *testing.T, class string, students ...string) {
	t.Helper()
	for _, s := range students {
		mustLabforge(t, "ssh", "-n", s, "--", "echo homework > ~/work.txt")
	}
	reset := mustLabforge(t, append([]string{"class", "reset", class}, students...)...)
	t.Logf("FIGURE class reset of %d: %s\n%s", len(students), reset.took.Round(time.Second), reset.stdout)
	for _, s := range students {
		if r := labforge(t, "ssh", "-n", s, "--", "test ! -e ~/work.txt"); r.code != 0 {
			t.Fatalf("%s: a file written before the reset survived it", s)
		}
	}
}
