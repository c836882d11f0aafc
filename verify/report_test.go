package verify

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jstemmer/go-junit-report/v2/junit"
)

func sampleReport() *Report {
	return &Report{
		Suite: "container-internals host", Host: "vm1",
		Started:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Duration: 1500 * time.Millisecond,
		Results: []CheckResult{
			{Name: "ssh listening", Type: TypePort, Passed: true, Message: "tcp 0.0.0.0:22", Duration: 20 * time.Millisecond, Attempts: 1},
			{Name: "selinux enforcing", Type: TypeCommand, Message: `stdout: want match for "^Enforcing$", got "Permissive"`,
				Hint: "run setenforce 1", Duration: 1200 * time.Millisecond, Attempts: 3, Output: "Permissive"},
		},
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	want := `STATUS  CHECK              TIME   DETAIL
PASS    ssh listening      0.02s  tcp 0.0.0.0:22
FAIL    selinux enforcing  1.20s  stdout: want match for "^Enforcing$", got "Permissive" (3 attempts)
                                  hint: run setenforce 1
1 passed, 1 failed
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteTableRealRun(t *testing.T) {
	rep := runYAML(t, "defaults: {retries: 0}\nchecks:\n  - {name: ok, command: 'echo fine'}\n  - {name: bad, command: 'false'}\n")
	var b bytes.Buffer
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if last := lines[len(lines)-1]; last != "1 passed, 1 failed" {
		t.Errorf("summary line = %q", last)
	}
	if !regexp.MustCompile(`(?m)^FAIL +bad +\d+\.\d\ds +exit status 1, want 0$`).MatchString(b.String()) {
		t.Errorf("no aligned FAIL row in:\n%s", b.String())
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\n  \"suite\": ") {
		t.Errorf("not indented:\n%s", b.String())
	}
	var got struct {
		Suite    string  `json:"suite"`
		Host     string  `json:"host"`
		Started  string  `json:"started"`
		Duration float64 `json:"duration_seconds"`
		Passed   int     `json:"passed"`
		Failed   int     `json:"failed"`
		Results  []map[string]any
	}
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Suite != "container-internals host" || got.Host != "vm1" || got.Started != "2025-01-02T03:04:05Z" ||
		got.Duration != 1.5 || got.Passed != 1 || got.Failed != 1 || len(got.Results) != 2 {
		t.Errorf("report = %+v", got)
	}
	fail := got.Results[1]
	for k, v := range map[string]any{"name": "selinux enforcing", "type": "command", "passed": false, "hint": "run setenforce 1",
		"duration_seconds": 1.2, "attempts": 3.0, "output": "Permissive"} {
		if fail[k] != v {
			t.Errorf("results[1].%s = %v, want %v", k, fail[k], v)
		}
	}
	if _, ok := got.Results[0]["output"]; ok {
		t.Error("empty output should be omitted")
	}
}

func TestWriteJUnit(t *testing.T) {
	real := runYAML(t, `name: local
defaults: {retries: 0}
checks:
  - {name: shell works, command: 'true'}
  - {name: selinux enforcing, command: 'echo Permissive', stdout: ^Enforcing$, hint: run setenforce 1}
`)
	var b bytes.Buffer
	if err := WriteJUnit(&b, sampleReport(), real); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), xml.Header) {
		t.Errorf("no XML header:\n%s", b.String())
	}
	var got junit.Testsuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Tests != 4 || got.Failures != 2 || len(got.Suites) != 2 {
		t.Fatalf("tests=%d failures=%d suites=%d", got.Tests, got.Failures, len(got.Suites))
	}
	s := got.Suites[0]
	if s.Name != "container-internals host on vm1" || s.Hostname != "vm1" || s.Time != "1.500" || s.Timestamp != "2025-01-02T03:04:05Z" {
		t.Errorf("suite = %+v", s)
	}
	if got.Suites[1].Name != "local on localhost" {
		t.Errorf("suite name = %q", got.Suites[1].Name)
	}
	for _, s := range got.Suites {
		tc := s.Testcases[1]
		if tc.Name != "selinux enforcing" || tc.Failure == nil {
			t.Fatalf("testcase = %+v", tc)
		}
		want := `selinux enforcing: stdout: want match for "^Enforcing$", got "Permissive" (hint: run setenforce 1)`
		if tc.Failure.Message != want {
			t.Errorf("failure message = %q\nwant %q", tc.Failure.Message, want)
		}
		if !strings.Contains(tc.Failure.Data, "output:\nPermissive") {
			t.Errorf("failure text lacks the output: %q", tc.Failure.Data)
		}
		if s.Testcases[0].Failure != nil {
			t.Errorf("passing check has a failure: %+v", s.Testcases[0])
		}
	}
	if tc := got.Suites[0].Testcases[1]; tc.Time != "1.200" {
		t.Errorf("time = %q, want seconds", tc.Time)
	}
}
