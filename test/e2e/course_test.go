package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/labs"
)

// TestCourse plays the course as the nightly job does with every mistake:
// on a fresh lab host (its own suite is TestContainerInternals'), labforge
// ci --on proves each exercise and plays every wrong attempt, expecting the
// check it names to fail. Then the student's path
// (lab start, a mistake, lab check --json, the guest's labs command) is
// driven through the CLI. TestContainerInternals proves the course, with
// the mistakes of three exercises, in every CI run.
func TestCourse(t *testing.T) {
	needRoot(t)
	if os.Getenv("LABFORGE_E2E_MISTAKES") != "1" {
		t.Skip("set LABFORGE_E2E_MISTAKES=1 to play every wrong attempt on a booted lab host (about an hour under TCG)")
	}
	const name = "e2e-course"
	labforge(t, "down", name)
	downAfter(t, name)

	mustLabforge(t, "up", labSpec, "-n", name, "--no-verify")
	proveCourse(t, name, nil, "--wrong-attempts")
	c, err := labs.Default()
	if err != nil {
		t.Fatal(err)
	}

	// The student's path, through the CLI, for each wrong attempt.
	for _, e := range c.Exercises {
		for _, w := range e.WrongAttempts {
			t.Run(e.ID+"/"+w.Name, func(t *testing.T) {
				mustLabforge(t, "lab", "reset", e.ID, "-n", name)
				mustLabforge(t, "lab", "start", e.ID, "-n", name)
				script := labs.Env{}.ScriptCommand(e, w.Script)
				mustLabforge(t, "ssh", "-n", name, "--", "sudo sh -c "+runx.Quote(script))
				r := labforge(t, "lab", "check", e.ID, "-n", name, "--json")
				if r.code == 0 {
					t.Fatalf("lab check passed after the wrong attempt:\n%s", r.stdout)
				}
				var rep struct {
					Results []struct {
						Name   string `json:"name"`
						Passed bool   `json:"passed"`
						Hint   string `json:"hint"`
					} `json:"results"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("lab check --json: %v\n%s", err, r.stdout)
				}
				found := false
				for _, res := range rep.Results {
					if res.Name == w.Fails {
						found = true
						// A first failure points; the full hint comes with labs hint.
						if res.Passed || !strings.Contains(res.Hint, "labs hint "+e.ID) {
							t.Errorf("check %q: passed=%v hint %q, want a failure with a pointer", res.Name, res.Passed, res.Hint)
						}
					}
				}
				if !found {
					t.Errorf("no check %q in %s", w.Fails, r.stdout)
				}
				if h := mustLabforge(t, "lab", "hint", e.ID, "-n", name).stdout; !strings.Contains(h, w.Hint) {
					t.Errorf("lab hint %s does not say %q:\n%s", e.ID, w.Hint, h)
				}
				// The student sees the same inside the guest, the full hint now.
				g := labforge(t, "ssh", "-n", name, "--", "labs check "+e.ID)
				if g.code == 0 || !strings.Contains(g.stdout, w.Hint) {
					t.Errorf("labs check inside the guest: exit %d\n%s%s", g.code, g.stdout, g.stderr)
				}
				mustLabforge(t, "lab", "reset", e.ID, "-n", name)
			})
		}
	}
	if out := mustLabforge(t, "ssh", "-n", name, "--", "labs").stdout; !strings.Contains(out, "p2-seccomp") {
		t.Errorf("labs inside the guest:\n%s", out)
	}
}
