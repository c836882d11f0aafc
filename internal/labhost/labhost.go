// Package labhost brings up a verified lab host from a spec: the work of
// `labforge up`, shared by `ci` and `bench up`. The bring-up is an ordered
// list of named steps (Up's steps), each printed with its time.
package labhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/internal/warm"
	"github.com/labforge/labforge/verify"
)

// Options say which host to bring up, and how.
type Options struct {
	Name        string
	BootTimeout time.Duration
	NoVerify    bool // skip the spec's suite
	Cold        bool // boot from cold, neither using nor making a warm state
	SSHPort     int  // 0: a free one
	Build       BuildOptions
	Driver      Driver // nil: Real
}

// BuildOptions are the image build's.
type BuildOptions struct {
	Force    bool   // rebuild even when cached
	BaseFile string // the user's copy of a cloud base image
}

// Host is a host brought up and, unless asked not to, verified.
type Host struct {
	Inst   *instance.Instance
	Client *sshx.Client   // the caller closes it
	Report *verify.Report // nil with NoVerify; a failed suite is not an error
	// Started is when the host's own time began (after a warm state was
	// made, if one was); SSHReady how long it took to answer on SSH.
	Started  time.Time
	SSHReady time.Duration
}

// upRun is what the steps share.
type upRun struct {
	spec  *images.Spec
	opts  Options
	p     *progress.Printer
	suite *verify.Suite
	drv   Driver
	res   *builder.Result
	hv    Hypervisor
	accel virt.Accel
	snap  *instance.Snapshot
	host  Host
}

// Up builds the spec's image (cached), restores its warm state or boots it
// from cold, waits for SSH and runs the spec's suite. Ctrl-C at any point
// leaves no domain and no files.
func Up(ctx context.Context, spec *images.Spec, opts Options, p *progress.Printer) (*Host, error) {
	r := &upRun{spec: spec, opts: opts, p: p, drv: opts.Driver}
	if r.drv == nil {
		r.drv = Real
	}
	defer func() {
		if r.hv != nil {
			r.hv.Close()
		}
	}()
	for _, step := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"check the request", r.check},
		{"build", r.build},
		{"connect", r.connect},
		{"warm state", r.warmState},
		{"boot", r.boot},
		{"verify", r.verify},
	} {
		if err := step.run(ctx); err != nil {
			if r.host.Client != nil {
				r.host.Client.Close()
			}
			return nil, err
		}
	}
	return &r.host, nil
}

// check refuses a bad request before any work: the name, and the port.
func (r *upRun) check(context.Context) error {
	if err := instance.ValidName(r.opts.Name); err != nil {
		return err
	}
	if err := instance.Reserved(r.opts.Name); err != nil {
		return err
	}
	if err := checkSSHPort(r.opts.Name, r.opts.SSHPort); err != nil {
		return err
	}
	if !r.opts.NoVerify {
		var err error
		r.suite, err = Suite(r.spec)
		return err
	}
	return nil
}

func (r *upRun) build(ctx context.Context) error {
	var err error
	r.res, err = r.drv.Build(ctx, r.spec, r.opts.Build, r.p)
	return err
}

func (r *upRun) connect(ctx context.Context) error {
	var why string
	var err error
	if r.hv, r.accel, why, err = r.drv.Connect(ctx); err != nil {
		return err
	}
	r.p.Note("accelerator %s: %s", r.accel, why)
	return nil
}

// warmState finds (or makes, once per image) the state to restore from.
// A host's time counts from here: checking its warm state is part of it,
// making one is not.
func (r *upRun) warmState(ctx context.Context) error {
	r.host.Started = time.Now()
	if r.opts.Cold || r.hv.Remote() {
		return nil
	}
	snap, why, made, err := r.hv.WarmState(ctx, r.spec, r.suite, r.res, r.accel, r.opts.BootTimeout, r.p)
	if err != nil {
		return err
	}
	if made {
		r.host.Started = time.Now()
	}
	if snap == nil {
		r.p.Note("cold boot: %s", why)
	}
	r.snap = snap
	return nil
}

func (r *upRun) boot(ctx context.Context) error {
	specPath := filepath.Join(r.spec.Dir, filepath.Base(r.spec.Path))
	h := &r.host
	var err error
	if r.snap != nil {
		err = r.p.Timed("restore to SSH-ready", func() (string, error) {
			var err error
			h.Inst, h.Client, err = r.hv.Restore(ctx, instance.RestoreOptions{
				Name: r.opts.Name, Spec: specPath, Image: r.res.Image, Verify: r.spec.VerifyPath(), SSHPort: r.opts.SSHPort, From: *r.snap,
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s from %s, own identity, ssh on 127.0.0.1:%d", h.Inst.Domain, r.snap.ID, h.Inst.SSHPort), nil
		})
	} else {
		err = r.p.Timed("boot to SSH-ready", func() (string, error) {
			var err error
			h.Inst, h.Client, err = r.hv.Boot(ctx, instance.UpOptions{
				Name: r.opts.Name, Spec: specPath, Image: r.res.Image, User: r.spec.User,
				MemoryMiB: uint(r.spec.VM.Memory.MiB()), CPUs: uint(r.spec.VM.CPUs), Accel: r.accel,
				BootTimeout: r.opts.BootTimeout, Verify: r.spec.VerifyPath(), SSHPort: r.opts.SSHPort,
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s, ssh on 127.0.0.1:%d", h.Inst.Domain, h.Inst.SSHPort), nil
		})
	}
	h.SSHReady = time.Since(h.Started)
	return err
}

// verify runs the suite; the report is the step's account, the step shows
// that checks go on. Ctrl-C during it removes the host, as anywhere in up.
func (r *upRun) verify(ctx context.Context) error {
	if r.suite == nil {
		return nil
	}
	h := &r.host
	_ = r.p.Counted("verify", "checks", len(r.suite.Checks), func(done func()) (string, error) {
		h.Report = r.drv.Verify(ctx, h.Client, r.suite, verify.Options{Batch: true, Progress: func(verify.CheckResult) { done() }})
		return fmt.Sprintf("%d checks, %s", len(r.suite.Checks), h.Report.Via), nil
	})
	h.Report.Host = h.Inst.Name
	if ctx.Err() != nil {
		if h.Client != nil {
			h.Client.Close()
			h.Client = nil
		}
		if err := r.hv.Down(h.Inst.Name); err != nil {
			return errors.Join(ctx.Err(), err)
		}
		return ctx.Err()
	}
	return nil
}

// Build builds spec with a log file in the cache's build directory.
func Build(ctx context.Context, spec *images.Spec, o BuildOptions, p builder.Progress) (*builder.Result, error) {
	cache := paths.Cache()
	logPath := filepath.Join(cache, "builds", spec.Name, "build.log")
	started := time.Now().Add(-time.Second) // file times may be coarser
	res, err := builder.Build(ctx, spec, builder.Options{
		CacheDir: cache, LogPath: logPath, Progress: p, Force: o.Force, BaseFile: o.BaseFile,
	})
	if err != nil {
		// A build that stopped before its lock has written no log.
		if st, serr := os.Stat(logPath); serr == nil && !st.ModTime().Before(started) {
			return nil, fmt.Errorf("build %s: %w (full log: %s)", spec.Name, err, logPath)
		}
		return nil, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	return res, nil
}

// WarmState is warm.Ensure for the spec's image, its steps printed. The
// saved host must pass the spec's suite: suite when the caller loaded it,
// else loaded here (up --no-verify, class create).
func WarmState(ctx context.Context, conn *virt.Conn, spec *images.Spec, suite *verify.Suite, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (*instance.Snapshot, string, bool, error) {
	if suite == nil {
		var err error
		if suite, err = Suite(spec); err != nil {
			return nil, "", false, err
		}
	}
	return warm.Ensure(ctx, conn, warm.MakeOptions{
		Machine: warm.Machine{Spec: spec.Name, Image: res.Image, ImageSum: res.SHA256, Accel: accel,
			MemoryMiB: uint(spec.VM.Memory.MiB()), CPUs: uint(spec.VM.CPUs)},
		SpecPath: filepath.Join(spec.Dir, filepath.Base(spec.Path)), User: spec.User, Suite: suite, BootTimeout: bootTimeout,
	}, p.Phased)
}

// checkSSHPort fails before any build when the port asked for is taken.
// A port held by this instance's own leftover (a killed up) is not: Up
// removes that domain first, or says the instance is still up.
func checkSSHPort(name string, port int) error {
	if port == 0 {
		return nil
	}
	err := instance.CheckSSHPort(port)
	if err == nil {
		return nil
	}
	if inst, lerr := instance.Load(name); lerr == nil && inst.SSHPort == port {
		return nil
	}
	return err
}

// Suite is the spec's verify suite with its denial gate, nil when the
// spec has none.
func Suite(spec *images.Spec) (*verify.Suite, error) {
	if spec.VerifyPath() == "" {
		return nil, nil
	}
	suite, err := verify.Load(spec.VerifyPath())
	if err != nil {
		return nil, err
	}
	addDenialCheck(suite, spec)
	return suite, nil
}

// addDenialCheck ends the suite with the SELinux denial gate: on an
// enforcing host, any denial the spec does not accept fails verification.
func addDenialCheck(suite *verify.Suite, spec *images.Spec) {
	if suite == nil || spec == nil || spec.SELinux == "disabled" {
		return
	}
	suite.Checks = append(suite.Checks, verify.AVCCheck(spec.AcceptedDenials()))
}

// SuiteFor loads a suite to run against hosts of the spec at specPath,
// with the spec's denial gate added when the spec can still be read.
func SuiteFor(suitePath, specPath string, stderr io.Writer) (*verify.Suite, error) {
	suite, err := verify.Load(suitePath)
	if err != nil {
		return nil, err
	}
	if specPath == "" {
		return suite, nil
	}
	spec, err := images.Load(specPath)
	if err != nil {
		fmt.Fprintf(stderr, "labforge: warning: no SELinux denial check: %v\n", err)
		return suite, nil
	}
	addDenialCheck(suite, spec)
	return suite, nil
}

// Fields are the host's result for tools reading --progress-json.
func (h *Host) Fields() map[string]any {
	r := map[string]any{"name": h.Inst.Name, "domain": h.Inst.Domain, "sshPort": h.Inst.SSHPort,
		"sshReadySeconds": h.SSHReady.Seconds(), "seconds": time.Since(h.Started).Seconds(), "restored": h.Inst.Restored}
	if h.Report != nil {
		r["checks"], r["failed"] = len(h.Report.Results), h.Report.Failed()
	}
	return r
}

// Greeting tells a person the host is up and how to use it.
func (h *Host) Greeting() string {
	i := h.Inst
	return fmt.Sprintf("\n%s is up (SSH-ready in %s, verified in %s).\n  log in:   labforge ssh -n %s\n  or:       ssh -F %s %s\n  console:  %s\n  stop:     labforge down %s\n",
		i.Name, h.SSHReady.Round(100*time.Millisecond), time.Since(h.Started).Round(100*time.Millisecond),
		i.Name, i.SSHConfigPath(), i.Domain, i.ConsolePath(), i.Name)
}
