package class

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/instance"
)

func TestSpecOptionsValidate(t *testing.T) {
	ok := SpecOptions{Name: "c", Students: 2}
	for _, tc := range []struct {
		name string
		edit func(*SpecOptions)
		want string // "" for valid
	}{
		{"valid", func(*SpecOptions) {}, ""},
		{"99 students", func(o *SpecOptions) { o.Students = 99 }, ""},
		{"local and remote hosts", func(o *SpecOptions) { o.Hosts = []string{"qemu:///system", "qemu+ssh://u@h/system"} }, ""},
		{"no students", func(o *SpecOptions) { o.Students = 0 }, "--students must be between 1 and 99, got 0"},
		{"too many students", func(o *SpecOptions) { o.Students = 100 }, "--students must be between 1 and 99, got 100"},
		{"name too long", func(o *SpecOptions) { o.Name = strings.Repeat("c", 40) }, "is too long: its students' hosts"},
		{"reserved name", func(o *SpecOptions) { o.Name = "build" }, `class name "build"`},
		{"bad URI", func(o *SpecOptions) { o.Hosts = []string{"qemu:///system", "xen://h/"} }, `hypervisor URI "xen://h/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			err := o.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHostsThisMachine(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		want  bool
	}{
		{nil, true},
		{[]string{"qemu:///system", "qemu+ssh://h/system"}, true},
		{[]string{"qemu+ssh://h/system"}, false},
	} {
		if got := hostsThisMachine(tc.hosts); got != tc.want {
			t.Errorf("hostsThisMachine(%v) = %v, want %v", tc.hosts, got, tc.want)
		}
	}
}

// created is a class of three: one restored here, one booted from cold
// on another hypervisor, one that failed.
func created() *Created {
	return &Created{
		Class: &Class{Name: "demo"},
		Results: []HostResult{
			{Student: "demo-s01", Host: "qemu:///system", Instance: &instance.Instance{SSHPort: 2201, Restored: "snap"}, Took: 12400 * time.Millisecond, DiskBytes: 3 << 20},
			{Student: "demo-s02", Host: "qemu+ssh://u@hv2/system", Instance: &instance.Instance{SSHPort: 2202}, Took: 61 * time.Second, DiskBytes: 5 << 20, Cold: "no KVM"},
			{Student: "demo-s03", Host: "qemu:///system", Err: errors.New("no SSH"), Took: 900 * time.Second, DiskBytes: 1 << 20},
		},
		Uploads: []Upload{
			{Host: "qemu+ssh://u@hv2/system", Volume: "golden-ab.qcow2", Bytes: 700 << 20, Took: 4560 * time.Millisecond},
			{Host: "qemu+ssh://u@hv3/system", Volume: "golden-ab.qcow2", Skipped: true},
		},
		Took:       75 * time.Second,
		ImageBytes: 900 << 20,
	}
}

// The e2e tests and the benchmarks read these lines: they must not move.
func TestCreatedWriteText(t *testing.T) {
	t.Setenv("LABFORGE_STATE", "/state")
	var out, stderr bytes.Buffer
	m := created()
	if err := m.WriteText(&out, &stderr); err != nil {
		t.Fatal(err)
	}
	want := `golden image golden-ab.qcow2 uploaded to u@hv2:22 in 4.6s (700.0 MiB)
golden image golden-ab.qcow2 already on u@hv3:22
STUDENT   HOST      STATUS  SSH             UP IN  CLONE DISK
demo-s01  local     up      127.0.0.1:2201  12s    3.0 MiB
demo-s02  u@hv2:22  up      127.0.0.1:2202  1m1s   5.0 MiB
demo-s03  local     FAILED  -               15m0s  -
class demo: 2 of 3 hosts up in 1m15s on 2 hypervisor(s); clones take 8.0 MiB in all on top of the 900.0 MiB golden image
roster: /state/classes/demo/roster.md
`
	if out.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
	}
	wantErr := "labforge: demo-s02: booted from cold: no KVM\nlabforge: demo-s03: no SSH\n"
	if stderr.String() != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), wantErr)
	}
	if m.Failed() != 1 {
		t.Errorf("Failed = %d, want 1", m.Failed())
	}
}

func TestCreatedResult(t *testing.T) {
	got := created().Result()
	want := map[string]any{"class": "demo", "students": 3, "failed": 1, "restored": 1, "seconds": 75.0,
		"cloneBytes": int64(9 << 20), "imageBytes": int64(900 << 20)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Result = %v, want %v", got, want)
	}
}
