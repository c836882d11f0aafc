package e2e

import (
	"encoding/json"
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
	downAfter(t, name)
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

	t.Run("seal suite passes on the export and fails unsealed", func(t *testing.T) {
		out := t.TempDir()
		ex := mustLabforge(t, "image", "export", spec, "-o", out)
		t.Logf("export:\n%s", ex.stdout)
		img := filepath.Join(out, "e2e-layers.qcow2")
		sum, err := os.ReadFile(img + ".sha256")
		if err != nil || len(strings.Fields(string(sum))[0]) != 64 {
			t.Fatalf("no sha256 beside the export: %v %q", err, sum)
		}
		var rec struct {
			Layers []struct{ Step, Key string } `json:"layers"`
		}
		data, err := os.ReadFile(filepath.Join(out, "e2e-layers.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &rec); err != nil || len(rec.Layers) != 3 {
			t.Fatalf("build record layers: %v %+v", err, rec)
		}
		mustLabforge(t, "image", "verify", img)
		unsealed := filepath.Join(cacheDir(), "layers", rec.Layers[1].Key+".qcow2") // the last step, before the seal
		r := labforge(t, "image", "verify", unsealed)
		if r.code == 0 || !strings.Contains(r.stderr, "no build user") || !strings.Contains(r.stderr, "no SSH host keys") {
			t.Fatalf("seal suite on an unsealed layer: exit %d, %s", r.code, r.stderr)
		}
	})

	t.Run("a corrupted cache entry is refused by name", func(t *testing.T) {
		var rec struct {
			Layers []struct{ Key string } `json:"layers"`
		}
		// the record of the export above names the layers; corrupt the first
		out := t.TempDir()
		mustLabforge(t, "image", "export", spec, "-o", out)
		data, _ := os.ReadFile(filepath.Join(out, "e2e-layers.json"))
		if err := json.Unmarshal(data, &rec); err != nil || len(rec.Layers) == 0 {
			t.Fatalf("record: %v", err)
		}
		layer := filepath.Join(cacheDir(), "layers", rec.Layers[0].Key+".qcow2")
		flip(t, layer)
		r := labforge(t, "build", spec)
		flip(t, layer) // put the byte back
		if r.code == 0 || !strings.Contains(r.stderr, layer) || !strings.Contains(r.stderr, "corrupt") {
			t.Fatalf("build with a corrupt layer: exit %d, %s", r.code, r.stderr)
		}
		mustLabforge(t, "build", spec)

		// The base disk under the layers is checked the same way.
		var first struct{ Parent string }
		readJSON(t, strings.TrimSuffix(layer, ".qcow2")+".json", &first)
		base := filepath.Join(cacheDir(), "images", "e2e-layers-"+first.Parent+".qcow2")
		flip(t, base)
		r = labforge(t, "build", spec)
		flip(t, base)
		if r.code == 0 || !strings.Contains(r.stderr, base) || !strings.Contains(r.stderr, "sha256") {
			t.Fatalf("build with a corrupt base disk: exit %d, %s", r.code, r.stderr)
		}
		mustLabforge(t, "build", spec)
	})

	// From cold: this image is new each run, so a warm state of it would
	// serve one host and then be pruned.
	mustLabforge(t, "up", "--name", name, "--cold", spec)
	r := mustLabforge(t, "ssh", "-n", name, "--", "cat", "/etc/labforge-marker")
	if strings.TrimSpace(r.stdout) != "CHANGED-"+stamp {
		t.Fatalf("marker %q, want the changed step's", r.stdout)
	}
	mustLabforge(t, "down", name)
}

// flip inverts one byte in the middle of a file.
func flip(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b := make([]byte, 1)
	off := st.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func cacheDir() string {
	if d := os.Getenv("LABFORGE_CACHE"); d != "" {
		return d
	}
	return "/var/cache/labforge"
}
