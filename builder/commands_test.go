package builder

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/virt"
)

// A build guest is held while its build runs, and only then.
func TestHolder(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("LABFORGE_CACHE", cache)
	if h := Holder(BuildGuestPrefix + "lab"); h != "" {
		t.Fatalf("no build runs, yet held by %q", h)
	}
	unlock, err := fsx.Lock(buildLock(cache, "lab"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if h := Holder(BuildGuestPrefix + "lab"); h != "the build of lab that runs it (it goes when the build ends)" {
		t.Fatalf("held by %q", h)
	}
	if h := Holder("lab"); h != "" {
		t.Fatalf("an instance named like the spec is held by %q", h)
	}
}

func TestWriteChanges(t *testing.T) {
	changes := []Change{
		{Kind: "package", Name: "bash", A: "5.2", B: "5.2.1"},
		{Kind: "file", Name: "/etc/x", A: "", B: "mode\t0644 " + strings.Repeat("x", 80)},
	}
	var out bytes.Buffer
	if err := WriteChanges(&out, changes, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "KIND") || lines[3] != "2 differences (1 packages, 1 files)" {
		t.Fatalf("table:\n%s", out.String())
	}
	if !strings.Contains(lines[2], "(absent)") || !strings.Contains(lines[2], "mode 0644 ") || !strings.HasSuffix(lines[2], "...") || len(lines[2]) > 120 {
		t.Fatalf("the file's row: %q", lines[2])
	}
	out.Reset()
	if err := WriteChanges(&out, nil, true); err != nil || out.String() != "[]\n" {
		t.Fatalf("no changes as JSON: %q, %v", out.String(), err)
	}
}

func TestWriteCacheList(t *testing.T) {
	var out bytes.Buffer
	entries := []CacheEntry{{Kind: "image", Key: "k1", Bytes: 3 << 20, Used: time.Now(), Spec: "lab"}, {Kind: "base", Key: "k2", Bytes: 1 << 20, Used: time.Now()}}
	if err := WriteCacheList(&out, entries); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "KIND") || !strings.HasPrefix(lines[3], "total") || !strings.Contains(lines[3], "4.0 MiB") {
		t.Fatalf("cache ls:\n%s", out.String())
	}
}

// With no instance and an empty cache, prune removes nothing and says so.
func TestCachePruneUnusedEmpty(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LABFORGE_STATE", filepath.Join(dir, "state"))
	var out bytes.Buffer
	if err := CachePruneUnused(&out, filepath.Join(dir, "cache"), time.Now()); err != nil || out.String() != "freed 0 B\n" {
		t.Fatalf("%q, %v", out.String(), err)
	}
}

// What the user leaves open comes from the stem and this host.
func TestExportBoxAsDefaults(t *testing.T) {
	var out bytes.Buffer
	missing := filepath.Join(t.TempDir(), "none.qcow2")
	_, o, err := ExportBoxAs(context.Background(), progress.New(&out, true, false), missing, "none", filepath.Join(t.TempDir(), "none.box"), t.TempDir(), BoxOptions{MemoryMiB: 1, CPUs: 1})
	if err == nil {
		t.Fatal("a missing image made a box")
	}
	if o.Name != "labforge/none" || len(o.Loaders) != len(virt.Firmwares()) {
		t.Fatalf("options %+v", o)
	}
	_, o, _ = ExportBoxAs(context.Background(), progress.New(&out, true, false), missing, "none", filepath.Join(t.TempDir(), "mine.box"), t.TempDir(), BoxOptions{Name: "mine", Loaders: []string{"/f"}, MemoryMiB: 1, CPUs: 1})
	if o.Name != "mine" || len(o.Loaders) != 1 {
		t.Fatalf("the user's options were replaced: %+v", o)
	}
}
