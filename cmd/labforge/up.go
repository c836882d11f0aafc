package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/internal/warm"
	"github.com/labforge/labforge/verify"
)

type upFlags struct {
	name        string
	bootTimeout time.Duration
	noVerify    bool
	cold        bool
	sshPort     int // 0: a free one
	report      reportFlags
	build       buildFlags
}

func newUpCmd(g *globalFlags) *cobra.Command {
	f := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up [SPEC]",
		Short: "Build (if not cached), boot and verify a lab host",
		Long: `up builds the spec's image unless it is cached, brings up a copy-on-write
overlay of it through libvirt, waits for SSH and runs the spec's verify suite.

The first up of an image boots it once, waits until its suite passes and saves
that host's memory (a warm state, in the cache); every later up restores from
it in seconds and gives the host its own keys, name, machine-id, clock and
random seed. Where no state can be used, up says why and boots from cold.
Ctrl-C at any point leaves no domain and no files behind.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(args)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), cmd.OutOrStdout(), spec, f, g)
		},
	}
	cmd.Flags().StringVarP(&f.name, "name", "n", "default", "instance name")
	cmd.Flags().DurationVar(&f.bootTimeout, "boot-timeout", 10*time.Minute, "how long the guest may take to answer on SSH")
	cmd.Flags().BoolVar(&f.noVerify, "no-verify", false, "skip the verify suite")
	cmd.Flags().BoolVar(&f.cold, "cold", false, "boot from cold, neither using nor making a warm state")
	cmd.Flags().IntVar(&f.sshPort, "ssh-port", 0, "forward this port on 127.0.0.1 to the guest's SSH (default: a free one)")
	f.report.register(cmd)
	f.build.register(cmd)
	return cmd
}

func runUp(ctx context.Context, out io.Writer, spec *images.Spec, f *upFlags, g *globalFlags) error {
	up, err := bootAndVerify(ctx, out, spec, f, g)
	if err != nil {
		return err
	}
	defer up.client.Close()
	inst, rep := up.inst, up.rep
	if progressJSON {
		r := map[string]any{"name": inst.Name, "domain": inst.Domain, "sshPort": inst.SSHPort,
			"sshReadySeconds": up.bootTime.Seconds(), "seconds": time.Since(up.bootStart).Seconds(), "restored": inst.Restored}
		if rep != nil {
			r["checks"], r["failed"] = len(rep.Results), rep.Failed()
		}
		_ = newStepPrinter(out, false).result(r)
		if rep != nil && rep.Err() != nil {
			return exitError(1)
		}
		return nil
	}
	if rep != nil && rep.Err() != nil {
		fmt.Fprintf(os.Stderr, "labforge: %s: %v\n", inst.Name, rep.Err())
		fmt.Fprintf(out, "the instance is still up for inspection: labforge ssh -n %s, then labforge down %s\n", inst.Name, inst.Name)
		return exitError(1)
	}
	fmt.Fprintf(out, "\n%s is up (SSH-ready in %s, verified in %s).\n  log in:   labforge ssh -n %s\n  or:       ssh -F %s %s\n  console:  %s\n  stop:     labforge down %s\n",
		inst.Name, up.bootTime.Round(100*time.Millisecond), time.Since(up.bootStart).Round(100*time.Millisecond),
		inst.Name, inst.SSHConfigPath(), inst.Domain, inst.ConsolePath(), inst.Name)
	return nil
}

// upResult is a booted, verified instance.
type upResult struct {
	inst      *instance.Instance
	client    *sshx.Client
	rep       *verify.Report // nil with --no-verify
	bootStart time.Time
	bootTime  time.Duration
}

// bootAndVerify is up's work, shared with ci: build (cached), boot, wait
// for SSH, then run and report the spec's suite. The caller closes the
// client; a failed suite is not an error.
func bootAndVerify(ctx context.Context, out io.Writer, spec *images.Spec, f *upFlags, g *globalFlags) (*upResult, error) {
	if err := instance.ValidName(f.name); err != nil {
		return nil, err
	}
	if err := instance.Reserved(f.name); err != nil {
		return nil, err
	}
	if err := checkSSHPort(f.name, f.sshPort); err != nil {
		return nil, err
	}
	var suite *verify.Suite
	if !f.noVerify {
		var err error
		if suite, err = specSuite(spec); err != nil {
			return nil, err
		}
	}
	res, err := buildImage(ctx, spec, f.build, g.quiet, out)
	if err != nil {
		return nil, err
	}
	p := newStepPrinter(out, g.quiet)
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	accel, why := virt.ProbeAccel(ctx, paths.State())
	p.note("accelerator %s: %s", accel, why)
	// A host's time counts from here: checking its warm state is part of
	// it, making one (once per image) is not.
	t0 := time.Now()
	var snap *instance.Snapshot
	if !f.cold && !conn.Remote() {
		var why string
		var made bool
		if snap, why, made, err = warmState(ctx, conn, spec, suite, res, accel, f.bootTimeout, p); err != nil {
			return nil, err
		}
		if made {
			t0 = time.Now()
		}
		if snap == nil {
			p.note("cold boot: %s", why)
		}
	}
	var inst *instance.Instance
	var client *sshx.Client
	specPath := filepath.Join(spec.Dir, filepath.Base(spec.Path))
	if snap != nil {
		err = p.timed("restore to SSH-ready", func() (string, error) {
			var err error
			inst, client, err = instance.Restore(ctx, conn, instance.RestoreOptions{
				Name: f.name, Spec: specPath, Image: res.Image, Verify: spec.VerifyPath(), SSHPort: f.sshPort, From: *snap,
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s from %s, own identity, ssh on 127.0.0.1:%d", inst.Domain, snap.ID, inst.SSHPort), nil
		})
	} else {
		err = p.timed("boot to SSH-ready", func() (string, error) {
			var err error
			inst, client, err = instance.Up(ctx, conn, instance.UpOptions{
				Name: f.name, Spec: specPath, Image: res.Image, User: spec.User,
				MemoryMiB: uint(spec.VM.Memory.MiB()), CPUs: uint(spec.VM.CPUs), Accel: accel,
				BootTimeout: f.bootTimeout, Verify: spec.VerifyPath(), SSHPort: f.sshPort,
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s, ssh on 127.0.0.1:%d", inst.Domain, inst.SSHPort), nil
		})
	}
	if err != nil {
		return nil, err
	}
	bootTime := time.Since(t0)
	up := &upResult{inst: inst, client: client, bootStart: t0, bootTime: bootTime}
	if suite == nil {
		return up, nil
	}
	// The report is the step's account; the step shows that checks go on.
	_ = p.counted("verify", "checks", len(suite.Checks), func(done func()) (string, error) {
		up.rep = verify.Run(ctx, instance.RootRunner{Client: client}, suite, verify.Options{Batch: true, Progress: func(verify.CheckResult) { done() }})
		return fmt.Sprintf("%d checks, %s", len(suite.Checks), up.rep.Via), nil
	})
	up.rep.Host = inst.Name
	if ctx.Err() != nil {
		// Ctrl-C during verify: as anywhere else in up, nothing stays.
		client.Close()
		if err := instance.Down(conn, inst.Name); err != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		return nil, ctx.Err()
	}
	if err := f.report.write(out, up.rep); err != nil {
		client.Close()
		return nil, err
	}
	return up, nil
}

// warmState is warm.Ensure for the spec's image, its steps printed. The
// saved host must pass the spec's suite: suite when the caller loaded it,
// else loaded here (up --no-verify, class create).
func warmState(ctx context.Context, conn *virt.Conn, spec *images.Spec, suite *verify.Suite, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *stepPrinter) (*instance.Snapshot, string, bool, error) {
	if suite == nil {
		var err error
		if suite, err = specSuite(spec); err != nil {
			return nil, "", false, err
		}
	}
	return warm.Ensure(ctx, conn, warm.MakeOptions{
		Machine: warm.Machine{Spec: spec.Name, Image: res.Image, ImageSum: res.Record.SHA256, Accel: accel,
			MemoryMiB: uint(spec.VM.Memory.MiB()), CPUs: uint(spec.VM.CPUs)},
		SpecPath: filepath.Join(spec.Dir, filepath.Base(spec.Path)), User: spec.User, Suite: suite, BootTimeout: bootTimeout,
	}, p.phased)
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

// specSuite is the spec's verify suite with its denial gate, nil when the
// spec has none.
func specSuite(spec *images.Spec) (*verify.Suite, error) {
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

// loadSuiteFor loads a suite to run against hosts of the spec at specPath,
// with the spec's denial gate added when the spec can still be read.
func loadSuiteFor(suitePath, specPath string, stderr io.Writer) (*verify.Suite, error) {
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
