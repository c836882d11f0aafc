package class

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/verify"
)

func TestWriteStatus(t *testing.T) {
	var out bytes.Buffer
	err := WriteStatus(&out, []State{
		{Student: "demo-s01", Host: "local", State: "running", SSH: "ok (127.0.0.1:2201)", Memory: 600 << 20, Restored: "snap"},
		{Student: "demo-s02", Host: "u@hv2", State: "stopped", SSH: "unreachable"},
		{Student: "demo-s03", Host: "local", State: "running", SSH: "ok (127.0.0.1:2203)", Memory: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `STUDENT   HOST   STATE    SSH                  MEMORY     FROM
demo-s01  local  running  ok (127.0.0.1:2201)  600.0 MiB  warm state
demo-s02  u@hv2  stopped  unreachable          -          cold boot
demo-s03  local  running  ok (127.0.0.1:2203)  1.0 GiB    cold boot
total                                          1.6 GiB    
`
	if out.String() != want {
		t.Errorf("status:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestWriteResults(t *testing.T) {
	results := []HostResult{
		{Student: "demo-s01", Host: "qemu:///system", Instance: &instance.Instance{SSHPort: 2201, Restored: "snap"}, Took: 3 * time.Second},
		{Student: "demo-s02", Host: "qemu+ssh://u@hv2/system", Instance: &instance.Instance{SSHPort: 2202}, Took: 40 * time.Second, Cold: "no warm state there"},
		{Student: "demo-s03", Host: "qemu:///system", Err: errors.New("down"), Took: time.Second},
	}
	for _, tc := range []struct {
		a               Action
		stdout, stderrw string
	}{
		{ActionReset, "demo-s01: back to the golden image (restored from its warm state) in 3s on local (ssh 127.0.0.1:2201)\n" +
			"demo-s02: back to the golden image (booted) in 40s on u@hv2:22 (ssh 127.0.0.1:2202)\n",
			"labforge: demo-s02: booted from cold: no warm state there\n"},
		// Start and stop boot the host's own disk: there is no warm state
		// to miss, and nothing is said of one.
		{ActionStart, "demo-s01: up in 3s on local (ssh 127.0.0.1:2201)\ndemo-s02: up in 40s on u@hv2:22 (ssh 127.0.0.1:2202)\n", ""},
		{ActionStop, "demo-s01: stopped in 3s\ndemo-s02: stopped in 40s\n", ""},
	} {
		var out, stderr bytes.Buffer
		WriteResults(&out, &stderr, tc.a, results)
		if out.String() != tc.stdout || stderr.String() != tc.stderrw {
			t.Errorf("action %d:\nstdout %q\nwant   %q\nstderr %q\nwant   %q", tc.a, out.String(), tc.stdout, stderr.String(), tc.stderrw)
		}
	}
}

// A class that is not there fails before any hypervisor is asked.
func TestNoClass(t *testing.T) {
	t.Setenv("LABFORGE_STATE", t.TempDir())
	want := `no class "nope"`
	if err := Act(context.Background(), ActionStop, ActOptions{Name: "nope"}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Act = %v, want %q", err, want)
	}
	if _, err := RunVerify(context.Background(), VerifyOptions{Name: "nope"}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("RunVerify = %v, want %q", err, want)
	}
}

// Each report's table comes under its suite and host, and every report
// counts once however many of its checks failed.
func TestWriteReportsAndJUnit(t *testing.T) {
	reports := []*verify.Report{
		{Suite: "base", Host: "demo-s01", Results: []verify.CheckResult{{Name: "a", Passed: true}}},
		{Suite: "base", Host: "demo-s02", Results: []verify.CheckResult{{Name: "a"}, {Name: "b"}}},
		{Suite: "fingerprint", Host: "demo", Results: []verify.CheckResult{{Name: "demo-s02 matches the golden image"}}},
	}
	var out bytes.Buffer
	failed, err := writeReports(&out, reports)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 2 {
		t.Errorf("failed = %d, want 2", failed)
	}
	for _, h := range []string{"\nbase on demo-s01\n", "\nbase on demo-s02\n", "\nfingerprint on demo\n"} {
		if !strings.Contains(out.String(), h) {
			t.Errorf("no %q in:\n%s", h, out.String())
		}
	}
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := verify.WriteJUnitFile(path, reports...); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || strings.Count(string(data), "<testsuite ") != 3 {
		t.Errorf("junit: %v\n%s", err, data)
	}
}
