package builder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// image diff reports a kernel change (its JSON key once collided with the
// record's own "kernel" and was always empty) and refuses a manifest it
// cannot read instead of skipping the files.
func TestDiffRecords(t *testing.T) {
	dir := t.TempDir()
	write := func(name, release string) string {
		r := Record{Spec: "x", Kernel: "vmlinuz", Description: &Description{Kernel: release, OSRelease: "Debian 12",
			Packages: map[string]string{"bash": "5.2"}}}
		data, _ := json.Marshal(r)
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("a", "6.1.0-40-cloud-amd64"), write("b", "6.1.0-41-cloud-amd64")
	changes, err := DiffRecords(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Kind != "kernel" || changes[0].A != "6.1.0-40-cloud-amd64" || changes[0].B != "6.1.0-41-cloud-amd64" {
		t.Fatalf("changes %+v, want the kernel's", changes)
	}
	// A manifest that exists but cannot be read is an error, not a skip.
	if err := os.Mkdir(treeBeside(a), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := DiffRecords(a, b); err == nil || !strings.Contains(err.Error(), "file manifest of "+a) {
		t.Fatalf("an unreadable manifest: %v", err)
	}
}
