package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/labs"
)

// The course's program, which every lab host carries and its student (root
// there) can read, holds no reference solution: it runs the host's copy of
// the course and embeds none. TestMain built it as scripts/install does.
func TestCourseProgramHasNoSolutions(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "bin", "labforge-labs"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := labs.Default()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range c.Exercises {
		for _, l := range strings.Split(e.Solution, "\n") {
			if l = strings.TrimSpace(l); len(l) < 30 || strings.HasPrefix(l, "#") {
				continue
			}
			checked++
			if strings.Contains(string(data), l) {
				t.Errorf("%s: labforge-labs holds its solution's line %q", e.ID, l)
			}
		}
	}
	if checked < 17 {
		t.Fatalf("only %d solution lines to look for", checked)
	}
	t.Logf("%d solution lines, none in labforge-labs (%d bytes)", checked, len(data))
}
