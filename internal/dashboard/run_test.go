package dashboard

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOffLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:7840": false,
		"[::1]:7840":     false,
		"localhost:7840": false,
		"0.0.0.0:7840":   true,
		":7840":          true,
		"10.0.0.5:7840":  true,
		"lab.example:80": true,
		"no port":        false, // Serve refuses it
	} {
		if got := offLoopback(listen); got != want {
			t.Errorf("offLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "good"), filepath.Join(dir, "empty")
	os.WriteFile(good, []byte("  s3cret\n"), 0o600)
	os.WriteFile(empty, []byte("\n\t\n"), 0o600)
	if tok, err := readToken(good); err != nil || tok != "s3cret" {
		t.Errorf("readToken = %q, %v; want s3cret", tok, err)
	}
	if _, err := readToken(empty); err == nil || err.Error() != "--token-file "+empty+" is empty" {
		t.Errorf("readToken of an empty file = %v", err)
	}
	if _, err := readToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("readToken of a missing file: no error")
	}
}

// syncBuffer is written by Serve's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run with no class named serves every class on this machine, with the
// token from its file, and says where.
func TestRunServesEveryClass(t *testing.T) {
	state := t.TempDir()
	t.Setenv("LABFORGE_STATE", state)
	t.Setenv("LABFORGE_ACCEL", "tcg")
	for _, n := range []string{"alpha", "beta"} {
		os.MkdirAll(filepath.Join(state, "classes", n), 0o755)
		os.WriteFile(filepath.Join(state, "classes", n, "class.json"), []byte(`{"name":"`+n+`","students":["`+n+`-s01"]}`), 0o644)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{Options: Options{Listen: "127.0.0.1:0", Log: &log}, TokenFile: tokenFile, Out: &out})
	}()
	want := regexp.MustCompile(`^labforge class serve: 2 classes on http://(127\.0\.0\.1:\d+)/\n  instructor \(actions need this, it holds the token\): http://127\.0\.0\.1:\d+/\?token=s3cret\n$`)
	for deadline := time.Now().Add(10 * time.Second); !want.MatchString(out.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("Run said %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(log.String(), "warning") {
		t.Errorf("a warning on loopback: %s", log.String())
	}
}

func TestRunNoSuchClass(t *testing.T) {
	t.Setenv("LABFORGE_STATE", t.TempDir())
	err := Run(context.Background(), RunOptions{Names: []string{"nope"}, Options: Options{Listen: "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), `no class "nope"`) {
		t.Fatalf("Run = %v", err)
	}
}
