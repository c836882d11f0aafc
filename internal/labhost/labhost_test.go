package labhost

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

// fake is a Driver and its Hypervisor in one: it records every call, fails
// the one named in fail, and runs during (if set) inside the call named.
type fake struct {
	calls  []string
	fail   string // the call that returns an error
	warm   bool   // the image has a warm state
	remote bool
	during map[string]func()
	closed bool // the hypervisor connection
	failed int  // checks the suite reports failed
}

var errFake = errors.New("fake failure")

func (f *fake) call(name string) error {
	f.calls = append(f.calls, name)
	if fn := f.during[name]; fn != nil {
		fn()
	}
	if f.fail == name {
		return errFake
	}
	return nil
}

func (f *fake) Build(ctx context.Context, spec *images.Spec, o BuildOptions, p *progress.Printer) (*builder.Result, error) {
	if err := f.call("build"); err != nil {
		return nil, err
	}
	return &builder.Result{Image: "/cache/images/x.qcow2"}, nil
}

func (f *fake) Connect(ctx context.Context) (Hypervisor, virt.Accel, string, error) {
	if err := f.call("connect"); err != nil {
		return nil, "", "", err
	}
	return f, virt.TCG, "no KVM here", nil
}

func (f *fake) Verify(ctx context.Context, c *sshx.Client, s *verify.Suite, o verify.Options) *verify.Report {
	_ = f.call("verify")
	rep := &verify.Report{Suite: s.Name}
	for i, chk := range s.Checks {
		rep.Results = append(rep.Results, verify.CheckResult{Name: chk.Name, Passed: i >= f.failed, Attempts: 1})
		if o.Progress != nil {
			o.Progress(rep.Results[i])
		}
	}
	return rep
}

func (f *fake) Remote() bool { return f.remote }

func (f *fake) WarmState(ctx context.Context, spec *images.Spec, suite *verify.Suite, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (*instance.Snapshot, string, bool, error) {
	if err := f.call("warm state"); err != nil {
		return nil, "", false, err
	}
	if !f.warm {
		return nil, "warm state made with QEMU 7.2.21, this host has 7.2.22", false, nil
	}
	return &instance.Snapshot{ID: "x-warm"}, "", false, nil
}

func (f *fake) Boot(ctx context.Context, o instance.UpOptions) (*instance.Instance, *sshx.Client, error) {
	if err := f.call("boot " + o.Name); err != nil {
		return nil, nil, err
	}
	return &instance.Instance{Name: o.Name, Domain: "labforge-" + o.Name, SSHPort: 2222}, nil, nil
}

func (f *fake) Restore(ctx context.Context, o instance.RestoreOptions) (*instance.Instance, *sshx.Client, error) {
	if err := f.call("restore " + o.Name + " from " + o.From.ID); err != nil {
		return nil, nil, err
	}
	return &instance.Instance{Name: o.Name, Domain: "labforge-" + o.Name, SSHPort: 2222, Restored: o.From.ID}, nil, nil
}

func (f *fake) Down(name string) error { return f.call("down " + name) }

func (f *fake) Close() error { f.closed = true; return nil }

// testSpec is a spec with a suite of three checks in a temporary directory.
func testSpec(t *testing.T) *images.Spec {
	dir := t.TempDir()
	suite := "name: t\nchecks:\n  - {name: one, command: 'true'}\n  - {name: two, command: 'true'}\n  - {name: three, command: 'true'}\n"
	if err := os.WriteFile(filepath.Join(dir, "t.verify.yaml"), []byte(suite), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LABFORGE_STATE", t.TempDir()) // no instance records of this machine's
	return &images.Spec{Name: "t", Dir: dir, Path: filepath.Join(dir, "t.yaml"), User: "student",
		SELinux: "disabled", Verify: "t.verify.yaml", VM: images.VM{Memory: 1 << 30, CPUs: 1}}
}

func up(t *testing.T, f *fake, ctx context.Context, o Options) (*Host, string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Driver = f
	if o.Name == "" {
		o.Name = "s1"
	}
	h, err := Up(ctx, testSpec(t), o, progress.New(&out, false, false))
	return h, out.String(), err
}

func TestUpRestoresFromTheWarmState(t *testing.T) {
	f := &fake{warm: true}
	h, out, err := up(t, f, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"build", "connect", "warm state", "restore s1 from x-warm", "verify"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls %q, want %q", f.calls, want)
	}
	if h.Inst.Restored != "x-warm" || h.Report == nil || len(h.Report.Results) != 3 || h.Report.Host != "s1" {
		t.Fatalf("host %+v, report %+v", h.Inst, h.Report)
	}
	if !f.closed {
		t.Error("the hypervisor connection was left open")
	}
	for _, s := range []string{"accelerator tcg: no KVM here", "restore to SSH-ready", "verify"} {
		if !strings.Contains(out, s) {
			t.Errorf("no %q in the steps printed:\n%s", s, out)
		}
	}
}

func TestUpBootsColdAndSaysWhy(t *testing.T) {
	f := &fake{}
	_, out, err := up(t, f, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.calls, "boot s1") || !strings.Contains(out, "cold boot: warm state made with QEMU 7.2.21, this host has 7.2.22") {
		t.Fatalf("calls %q, printed:\n%s", f.calls, out)
	}
	// --cold, or a remote hypervisor: no warm state is looked for.
	for _, o := range []struct {
		f    *fake
		opts Options
	}{{&fake{warm: true}, Options{Cold: true}}, {&fake{warm: true, remote: true}, Options{}}} {
		if _, _, err := up(t, o.f, context.Background(), o.opts); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(o.f.calls, "warm state") || !slices.Contains(o.f.calls, "boot s1") {
			t.Errorf("%+v: calls %q", o.opts, o.f.calls)
		}
	}
}

// A failure midway stops the steps after it, leaves nothing to remove and
// closes what was opened.
func TestUpStopsAtAFailedStep(t *testing.T) {
	for _, c := range []struct {
		fail string
		want []string
	}{
		{"build", []string{"build"}},
		{"connect", []string{"build", "connect"}},
		{"warm state", []string{"build", "connect", "warm state"}},
		{"restore s1 from x-warm", []string{"build", "connect", "warm state", "restore s1 from x-warm"}},
	} {
		f := &fake{warm: true, fail: c.fail}
		h, _, err := up(t, f, context.Background(), Options{})
		if !errors.Is(err, errFake) || h != nil {
			t.Errorf("%s failing: host %v, err %v", c.fail, h, err)
		}
		if !slices.Equal(f.calls, c.want) {
			t.Errorf("%s failing: calls %q, want %q", c.fail, f.calls, c.want)
		}
		if c.fail != "build" && c.fail != "connect" && !f.closed {
			t.Errorf("%s failing: the hypervisor connection was left open", c.fail)
		}
	}
}

// A request that cannot work is refused before the build.
func TestUpRefusesABadRequestFirst(t *testing.T) {
	for _, name := range []string{"bad name!", "build-x", "warm-x"} {
		f := &fake{}
		if _, _, err := up(t, f, context.Background(), Options{Name: name}); err == nil || len(f.calls) > 0 {
			t.Errorf("name %q: err %v, calls %q", name, err, f.calls)
		}
	}
}

// A suite that fails is the report's to say, not an error: the host stays
// up for inspection.
func TestUpFailedSuiteKeepsTheHost(t *testing.T) {
	f := &fake{warm: true, failed: 1}
	h, _, err := up(t, f, context.Background(), Options{})
	if err != nil || h.Report.Failed() != 1 {
		t.Fatalf("err %v, report %+v", err, h.Report)
	}
	if slices.Contains(f.calls, "down s1") {
		t.Fatal("a host whose suite failed was removed")
	}
}

// Ctrl-C during verify removes the host, as anywhere in up.
func TestUpInterruptedDuringVerifyRemovesTheHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fake{warm: true, during: map[string]func(){"verify": cancel}}
	h, _, err := up(t, f, ctx, Options{})
	if !errors.Is(err, context.Canceled) || h != nil {
		t.Fatalf("host %v, err %v", h, err)
	}
	if f.calls[len(f.calls)-1] != "down s1" || !f.closed {
		t.Fatalf("calls %q, connection closed %v", f.calls, f.closed)
	}
	// And when the removal fails too, both are said.
	ctx, cancel = context.WithCancel(context.Background())
	f = &fake{warm: true, fail: "down s1", during: map[string]func(){"verify": cancel}}
	if _, _, err := up(t, f, ctx, Options{}); !errors.Is(err, context.Canceled) || !errors.Is(err, errFake) {
		t.Fatalf("err %v", err)
	}
}

func TestUpWithoutVerify(t *testing.T) {
	f := &fake{warm: true}
	h, _, err := up(t, f, context.Background(), Options{NoVerify: true})
	if err != nil || h.Report != nil || slices.Contains(f.calls, "verify") {
		t.Fatalf("err %v, report %v, calls %q", err, h.Report, f.calls)
	}
}
