package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// A running step says so every beat, in text and in JSON, and stops the
// moment it is done.
func TestProgressHeartbeat(t *testing.T) {
	for _, js := range []bool{false, true} {
		var b syncBuffer
		p := &stepPrinter{w: &b, json: js, beat: 20 * time.Millisecond, running: map[string]chan struct{}{}}
		p.Start("compile")
		time.Sleep(110 * time.Millisecond)
		p.Done("compile", time.Second, "", nil)
		time.Sleep(50 * time.Millisecond)
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		beats := 0
		for i, l := range lines {
			if js {
				var e progressEvent
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("line %d is not JSON: %q", i, l)
				}
				if e.Event == "running" {
					beats++
				}
			} else if strings.HasPrefix(l, "    ... compile, ") {
				beats++
			}
		}
		if beats < 2 {
			t.Fatalf("json=%v: %d heartbeats in %q", js, beats, b.String())
		}
		if last := lines[len(lines)-1]; !strings.Contains(last, "done") && !strings.Contains(last, "compile ok") {
			t.Fatalf("json=%v: a line after the step was done: %q", js, last)
		}
	}
}

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

func TestProgressJSON(t *testing.T) {
	var b bytes.Buffer
	progressJSON = true
	defer func() { progressJSON = false }()
	p := newStepPrinter(&b, false)
	p.Start("disk")
	p.Done("disk", 1500*time.Millisecond, "GPT", nil)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got %q", b.String())
	}
	var e progressEvent
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Step != "disk" || e.Event != "done" || e.Seconds != 1.5 || e.Note != "GPT" {
		t.Fatalf("event %+v (%v)", e, err)
	}
}
