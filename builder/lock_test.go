package builder

import (
	"context"
	"os"
	"testing"
	"time"
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
