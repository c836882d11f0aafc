package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
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
	_, err = ensureCloudBase(context.Background(), cache, b, "", nil)
	want := "base rocky-9: download " + b.URL + ": "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") ||
		!strings.HasSuffix(err.Error(), "or put the file at "+cloudBasePath(cache, b)+" or pass --base-file") {
		t.Fatalf("got %v, want prefix %q naming the refused connection", err, want)
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
	_, err := ensureCloudBase(context.Background(), t.TempDir(), b, f, nil)
	if err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "is not the pinned alma-9 image") || !strings.Contains(err.Error(), b.SHA256) {
		t.Fatalf("a wrong --base-file must be refused by name, with both sha256s: %v", err)
	}
}

// A download through the caller's context: a whole body arrives (the old
// code cancelled the request once the headers came), a truncated one is
// kept and resumed with a Range request, a wrong one is refused by sha256
// and not kept.
func TestDownload(t *testing.T) {
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])
	var cut atomic.Bool
	var ranges atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wrong" {
			w.Write(body[:1000])
			return
		}
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		if cut.Load() {
			// Promise the whole body, send half, hang up.
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		http.ServeContent(w, r, "base.qcow2", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	dir := t.TempDir()

	dst := filepath.Join(dir, "whole.qcow2")
	if err := download(context.Background(), srv.URL+"/base", dst, want, nil); err != nil {
		t.Fatalf("whole download: %v", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, body) {
		t.Fatal("downloaded bytes differ")
	}

	dst = filepath.Join(dir, "cut.qcow2")
	cut.Store(true)
	if err := download(context.Background(), srv.URL+"/base", dst, want, nil); err == nil {
		t.Fatal("a truncated body was accepted")
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("a truncated download appeared as the file")
	}
	if st, err := os.Stat(dst + ".part"); err != nil || st.Size() != int64(len(body)/2) {
		t.Fatalf("the part kept for resuming: %v", err)
	}
	cut.Store(false)
	if err := download(context.Background(), srv.URL+"/base", dst, want, nil); err != nil {
		t.Fatalf("resumed download: %v", err)
	}
	if ranges.Load() != 1 {
		t.Fatalf("%d Range requests, want 1 (the resume)", ranges.Load())
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, body) {
		t.Fatal("resumed bytes differ")
	}

	dst = filepath.Join(dir, "wrong.qcow2")
	err := download(context.Background(), srv.URL+"/wrong", dst, want, nil)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("wrong body: %v, want a ChecksumError", err)
	}
	for _, p := range []string{dst, dst + ".part"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("wrong bytes kept at %s", p)
		}
	}
}
