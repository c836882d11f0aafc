package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/images"
)

func TestGuestBoot(t *testing.T) {
	out := "Startup finished in 13.794s (kernel) + 1min 28.929s (userspace) = 1min 42.723s \ngraphical.target reached after 1min 14s in userspace.\n"
	if got := guestBoot(out); got != "1min 42.723s" {
		t.Fatalf("got %q", got)
	}
	if r := spanRatio("1min 30s", "2min 15s"); r < 0.666 || r > 0.667 {
		t.Fatalf("spanRatio = %f", r)
	}
}

// The rebuild measure edits the last step of a copy of the spec; the copy
// must still load, with the new script and everything else unchanged.
func TestRewriteLastStep(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../bench/peers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "peers.yaml")
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewriteLastStep(p, "echo MARKER > /etc/labforge-marker\n# bench 1\n"); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "motd"), []byte("x\n"), 0o644)
	spec, err := images.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(spec.Provision); n != 2 || !strings.HasSuffix(spec.Provision[1].Run, "# bench 1\n") || spec.Provision[0].Run != "install -m 0644 files/motd /etc/motd" {
		t.Fatalf("steps after the rewrite: %+v", spec.Provision)
	}
}

// The bench reads labforge's own machine-readable result, not its prose.
func TestResultNumber(t *testing.T) {
	out := `{"time":"2026-12-04T00:00:00Z","step":"boot","event":"done","seconds":7.2}
{"time":"2026-12-04T00:00:01Z","step":"result","event":"result","result":{"sshReadySeconds":7.25,"cloneBytes":10485760}}
`
	if d, err := resultSeconds(out, "sshReadySeconds"); err != nil || d.Seconds() != 7.25 {
		t.Fatalf("sshReadySeconds = %v, %v", d, err)
	}
	if n, err := resultNumber(out, "cloneBytes"); err != nil || n != 10485760 {
		t.Fatalf("cloneBytes = %v, %v", n, err)
	}
	if _, err := resultNumber(out, "nope"); err == nil {
		t.Fatal("a missing key read as a number")
	}
	if _, err := resultNumber("==> boot\n    boot ok in 7.2s\n", "sshReadySeconds"); err == nil {
		t.Fatal("prose read as a result")
	}
}
