package builder

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/images"
)

func TestCloudBaseOfflineFailsFast(t *testing.T) {
	// A closed port on loopback stands in for an unreachable mirror.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b, _ := images.LookupBase("rocky-9")
	b.URL = "http://" + addr + "/Rocky-9-GenericCloud.qcow2"
	cache := t.TempDir()
	t0 := time.Now()
	_, err = ensureCloudBase(context.Background(), cache, b, "")
	want := "base not reachable: " + b.URL + "; put the file at " + cloudBasePath(cache, b) + " or pass --base-file"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want prefix %q", err, want)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Fatalf("offline failure took %s", d)
	}
	if _, err := os.Stat(cloudBasePath(cache, b)); !os.IsNotExist(err) {
		t.Fatal("a failed download left a file behind")
	}
}

func TestBaseFileChecked(t *testing.T) {
	b, _ := images.LookupBase("alma-9")
	f := filepath.Join(t.TempDir(), "not-alma.qcow2")
	if err := os.WriteFile(f, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ensureCloudBase(context.Background(), t.TempDir(), b, f)
	if err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("a wrong --base-file must be refused by name: %v", err)
	}
}
