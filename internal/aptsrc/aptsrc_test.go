package aptsrc

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMirrorDeb822(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "sources.list.d", "debian.sources"), `Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
`)
	if got := Mirror(root, "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("Mirror = %q", got)
	}
	if got := Mirror(root, "trixie"); got != "" {
		t.Fatalf("Mirror(trixie) = %q, want none", got)
	}
}

func TestMirrorOneLine(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "sources.list"), "# deb http://old.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main non-free\n")
	if got := Mirror(root, "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("Mirror = %q", got)
	}
}

func TestMirrorNoApt(t *testing.T) {
	if got := Mirror(filepath.Join(t.TempDir(), "none"), "bookworm"); got != "" {
		t.Fatalf("Mirror = %q", got)
	}
}
