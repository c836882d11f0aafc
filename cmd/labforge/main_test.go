package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// A bad spec stops the command before anything is built, with one line
// that names file:line and the field.
func TestBuildRejectsBadSpec(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"name: x\nbase: debian-12\nvm:\n  memroy: 2GiB\n": "bad.yaml:4: vm.memroy: unknown field (known: cpus, memory)",
		"name: x\nbase: debian-12\nvm:\n  cpus: [1]\n":    "bad.yaml:4: vm.cpus: expected a single value, got a list",
		"name: x\nbase: fedora\n":                         `bad.yaml:2: base: unknown base "fedora"`,
	}
	for doc, want := range cases {
		path := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := run(t, "build", path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("build %q: got %v, want one line containing %q", doc, err, want)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "labforge ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

func TestCompletion(t *testing.T) {
	out, err := run(t, "completion", "bash")
	if err != nil || !strings.Contains(out, "__start_labforge") {
		t.Fatalf("completion: %v", err)
	}
}
