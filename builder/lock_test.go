package builder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/images"
)

// Building spec lab clears lab's stale work, never the live work of a
// concurrent build of lab-x.
func TestLockBuildKeepsOtherSpecsWork(t *testing.T) {
	cache := t.TempDir()
	other, err := os.MkdirTemp(cache, workPrefix("lab-x"))
	if err != nil {
		t.Fatal(err)
	}
	stale, err := os.MkdirTemp(cache, workPrefix("lab"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := lockBuild(context.Background(), cache, "lab", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("lab-x's work directory was removed: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("lab's stale work directory is still there: %v", err)
	}

	// A second build of lab waits for the first, and says so once.
	waited := make(chan string, 2)
	got := make(chan error, 1)
	go func() {
		u, err := lockBuild(context.Background(), cache, "lab", func(l string) { waited <- l })
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the second build did not say it waits")
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("the second build after the first: %v", err)
	}
	if len(waited) != 0 {
		t.Fatal("waiting was reported more than once")
	}

	// Ctrl-C while waiting ends the wait.
	unlock, _ = lockBuild(context.Background(), cache, "lab", nil)
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lockBuild(ctx, cache, "lab", nil); err == nil {
		t.Fatal("a cancelled wait took the lock")
	}
}

// A build that waits for another build of its spec does not touch that
// build's log: it opens (and truncates) the log only once it holds the lock.
func TestBuildOpensLogUnderLock(t *testing.T) {
	cache := t.TempDir()
	specPath := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(specPath, []byte("name: w\nbase: debian-12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := images.Load(specPath)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(cache, "builds", "w", "build.log")
	os.MkdirAll(filepath.Dir(logPath), 0o700)
	const running = "the first build's log\n"
	os.WriteFile(logPath, []byte(running), 0o600)
	unlock, err := lockBuild(context.Background(), cache, "w", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := Build(ctx, spec, Options{CacheDir: cache, LogPath: logPath}); err == nil || !strings.Contains(err.Error(), "another labforge is building w") {
		t.Fatalf("a build that never got the lock: %v", err)
	}
	if data, _ := os.ReadFile(logPath); string(data) != running {
		t.Fatalf("the running build's log became %q", data)
	}
}
