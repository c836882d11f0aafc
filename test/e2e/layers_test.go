package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// copyDir copies the test spec so the test can change a step.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLayerCache builds a spec with provisioning steps three times: cold,
// unchanged (no step runs, no guest boots), and with only its last step
// changed (only that step and the seal run). The result boots and passes
// its suite, which also checks the seal.
func TestLayerCache(t *testing.T) {
	needRoot(t)
	const name = "e2e-layers"
	labforge(t, "down", name)
	t.Cleanup(func() { labforge(t, "down", name) })
	dir := t.TempDir()
	copyDir(t, "testdata", dir)
	spec := filepath.Join(dir, "layers.yaml")
	// A marker unique to this run makes the first build cold for the steps.
	stamp := time.Now().Format("20060102150405.000000000")
	rewrite := func(marker string) {
		data, err := os.ReadFile(spec)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for i, l := range lines {
			if strings.Contains(l, "> /etc/labforge-marker") {
				lines[i] = "    run: echo " + marker + " > /etc/labforge-marker"
			}
		}
		if err := os.WriteFile(spec, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(spec)
	os.WriteFile(spec, []byte(strings.Replace(string(data), "Welcome", "Welcome ("+stamp+")", 1)), 0o644)
	os.WriteFile(filepath.Join(dir, "files", "motd"), []byte("Welcome to the e2e lab host, run "+stamp+".\n"), 0o644)

	cold := mustLabforge(t, "build", spec)
	t.Logf("cold build: %s\n%s", cold.took.Round(time.Second), cold.stdout)
	for _, want := range []string{"step motd ok", "step marker ok", "seal ok"} {
		if !strings.Contains(cold.stdout, want) {
			t.Fatalf("cold build did not run %q:\n%s", want, cold.stdout)
		}
	}

	warm := mustLabforge(t, "build", spec)
	t.Logf("unchanged rebuild: %s\n%s", warm.took.Round(100*time.Millisecond), warm.stdout)
	if strings.Contains(warm.stdout, "boot build guest") || strings.Contains(warm.stdout, "step motd ok") {
		t.Fatalf("an unchanged rebuild ran steps:\n%s", warm.stdout)
	}

	rewrite("CHANGED-" + stamp)
	last := mustLabforge(t, "build", spec)
	t.Logf("rebuild after changing the last step: %s\n%s", last.took.Round(time.Second), last.stdout)
	if strings.Contains(last.stdout, "step motd ok") || !strings.Contains(last.stdout, "step marker ok") {
		t.Fatalf("changing the last step should re-run it alone:\n%s", last.stdout)
	}
	t.Logf("FIGURE layer cache: cold %s, unchanged %s (%.3fx of cold), last step changed %s (%.2fx of cold)",
		cold.took.Round(time.Second), warm.took.Round(100*time.Millisecond), warm.took.Seconds()/cold.took.Seconds(),
		last.took.Round(time.Second), last.took.Seconds()/cold.took.Seconds())

	mustLabforge(t, "up", "--name", name, spec)
	r := mustLabforge(t, "ssh", "-n", name, "--", "cat", "/etc/labforge-marker")
	if strings.TrimSpace(r.stdout) != "CHANGED-"+stamp {
		t.Fatalf("marker %q, want the changed step's", r.stdout)
	}
	mustLabforge(t, "down", name)
}
