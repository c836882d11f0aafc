package progress

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// A running step says so every beat, in text and in JSON, and stops the
// moment it is done.
func TestProgressHeartbeat(t *testing.T) {
	for _, js := range []bool{false, true} {
		var b syncBuffer
		p := &Printer{w: &b, json: js, beat: 20 * time.Millisecond, running: map[string]chan struct{}{}}
		p.Start("compile")
		time.Sleep(110 * time.Millisecond)
		p.Done("compile", time.Second, "", nil)
		time.Sleep(50 * time.Millisecond)
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		beats := 0
		for i, l := range lines {
			if js {
				var e Event
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
	p := New(&b, false, true)
	p.Start("disk")
	p.Done("disk", 1500*time.Millisecond, "GPT", nil)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got %q", b.String())
	}
	var e Event
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Step != "disk" || e.Event != "done" || e.Seconds != 1.5 || e.Note != "GPT" {
		t.Fatalf("event %+v (%v)", e, err)
	}
}
