package builder

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

//go:embed seal.sh
var sealScript string

// buildUser is the account the build guest is provisioned through; the
// seal removes it.
const buildUser = "lfbuild"

// guestDir is where a step's files are copied on the build guest.
const guestDir = "/tmp/labforge"

// BuildGuestMarker exists on a disk only while it is a build guest: the
// builder writes it at each build boot and the seal removes it. A unit
// that must start only on the hosts made from the image (a cluster that
// takes the host's name, first-boot keys) carries
// ConditionPathExists=!/etc/labforge/build-guest, so that a later build
// boot does not start it and bake its state into the image.
const BuildGuestMarker = "/etc/labforge/build-guest"

// provision boots one build guest on the last complete layer and runs the
// steps from plan[first] on, freezing each step's result as a layer with a
// disk-only external snapshot, then seals the last layer.
func (b *build) provision(ctx context.Context, base, baseKey string, plan []layer, first int) (err error) {
	parent, parentKey := base, baseKey
	if first > 0 {
		parent, parentKey = plan[first-1].Path, plan[first-1].Key
	}
	if err := os.MkdirAll(filepath.Dir(plan[0].Path), 0o755); err != nil {
		return err
	}
	// Layers without their record are unfinished: drop them now, and
	// again if this build fails.
	dropUnfinished := func() {
		for _, l := range plan[first:] {
			if _, serr := os.Stat(l.record()); serr != nil {
				os.Remove(l.Path)
			}
		}
	}
	dropUnfinished()
	defer func() {
		if err != nil {
			dropUnfinished()
		}
	}()
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	accel, _ := virt.ProbeAccel(ctx, paths.State())
	name := BuildGuestPrefix + b.spec.Name
	dom := instance.DomainPrefix + name
	defer instance.Down(conn, name) //nolint:errcheck // gone already unless the build failed

	// Only the steps this guest runs decide whether it gets the outside.
	from := plan[first].Index
	if from < 0 {
		from = len(b.spec.Provision)
	}
	outside := b.spec.NeedsNetwork(from)
	var client *sshx.Client
	if err := b.step("boot build guest", func() (string, error) {
		var err error
		_, client, err = instance.Up(ctx, conn, instance.UpOptions{
			Name: name, Spec: b.spec.Path, Image: parent, Overlay: plan[first].Path, User: buildUser,
			MemoryMiB: uint(b.spec.VM.Memory.MiB()), CPUs: uint(b.spec.VM.CPUs), Accel: accel,
			BootTimeout: 10 * time.Minute, Outside: outside,
		})
		net := "no network"
		if outside {
			net = "outside network"
		}
		return fmt.Sprintf("on layer %s, %s, %s", parentKey, accel, net), err
	}); err != nil {
		return err
	}
	defer client.Close()
	if err := b.checkEnforcing(ctx, client); err != nil {
		return err
	}
	if res, err := client.Run(ctx, "sudo -n install -D -m 0644 /dev/null "+BuildGuestMarker); err != nil || res.ExitCode != 0 {
		return fmt.Errorf("mark the build guest: exit %d: %s: %v", res.ExitCode, strings.TrimSpace(res.Stderr), err)
	}

	for i := first; i < len(plan); i++ {
		l := plan[i]
		t0 := time.Now()
		if l.Index == sealIndex {
			if err := b.step(sealStep, func() (string, error) { return "", b.seal(ctx, conn, client, dom) }); err != nil {
				return err
			}
		} else {
			name, run := "step "+l.Step, func() (string, error) { return l.Key, b.runStep(ctx, client, l.Index) }
			if l.Index == courseIndex {
				name, run = courseStep, func() (string, error) { return b.installCourse(ctx, client) }
			}
			if err := b.step(name, run); err != nil {
				return err
			}
			if err := b.checkDenials(ctx, client, l.Step); err != nil {
				return err
			}
			// Freeze this step's disk: QEMU goes on writing to the next
			// layer's overlay, and this one becomes read-only history.
			if _, err := client.Run(ctx, "sync"); err != nil {
				return err
			}
			if err := conn.SnapshotDisk(dom, "vda", plan[i+1].Path); err != nil {
				return err
			}
		}
		// libvirt makes snapshot files 0600 and hands them to its QEMU
		// user; a finished layer is read-only history that later builds'
		// guests (QEMU's group) read too, and nobody else.
		if err := os.Chmod(l.Path, 0o640); err != nil {
			return err
		}
		gid := virt.HypervisorGID(virt.QEMUConf)
		if gid < 0 {
			gid = os.Getgid()
		}
		if err := os.Chown(l.Path, os.Getuid(), gid); err != nil {
			return err
		}
		if err := writeLayerMeta(l, parentKey, time.Since(t0)); err != nil {
			return err
		}
		parentKey = l.Key
	}
	return nil
}

// runStep copies step i's files to the guest and runs its script as root,
// its output going to the build log.
func (b *build) runStep(ctx context.Context, c *sshx.Client, i int) error {
	st := b.spec.Provision[i]
	if _, err := c.Run(ctx, "rm -rf "+guestDir+" && mkdir -p "+guestDir); err != nil {
		return err
	}
	for k, top := range b.spec.StepFiles(i) {
		// A directory goes over whole, each file keeping its mode.
		err := filepath.WalkDir(top, func(src string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(top, src)
			dst := path.Join(guestDir, filepath.ToSlash(st.Files[k]), filepath.ToSlash(rel))
			if _, err := c.Run(ctx, "mkdir -p "+runx.Quote(path.Dir(dst))); err != nil {
				return err
			}
			fi, err := os.Stat(src)
			if err != nil {
				return err
			}
			return c.Upload(ctx, src, dst, fi.Mode().Perm())
		})
		if err != nil {
			return fmt.Errorf("step %q: copy %s: %w", st.Name, st.Files[k], err)
		}
	}
	script := "set -eu\ncd " + guestDir + "\n" + st.Run + "\n"
	if err := c.Write(ctx, strings.NewReader(script), guestDir+"/.step.sh", 0o644); err != nil {
		return err
	}
	fmt.Fprintf(b.opts.Log, "--- step %s\n", st.Name)
	tail := &runx.Tail{}
	out := io.MultiWriter(b.opts.Log, tail)
	code, err := c.Stream(ctx, "sudo -n bash -o pipefail "+guestDir+"/.step.sh", nil, out, out)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("step %q exited %d: %s", st.Name, code, tail.String())
	}
	return nil
}

// seal runs the seal script, which powers the guest off, and waits for it.
func (b *build) seal(ctx context.Context, conn *virt.Conn, c *sshx.Client, name string) error {
	if err := c.Write(ctx, strings.NewReader(sealScript), "/tmp/.labforge-seal.sh", 0o755); err != nil {
		return err
	}
	res, err := c.Run(ctx, "sudo -n sh /tmp/.labforge-seal.sh "+buildUser)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("seal: %w", err)
	}
	if res.ExitCode != 0 && res.ExitCode != -1 {
		return fmt.Errorf("seal exited %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	fmt.Fprint(b.opts.Log, res.Stdout, res.Stderr)
	return conn.WaitStopped(ctx, name, 3*time.Minute)
}

// checkEnforcing refuses to provision an image meant to be enforcing in a
// guest that is not: what the steps do would never meet the policy.
func (b *build) checkEnforcing(ctx context.Context, c *sshx.Client) error {
	if b.spec.SELinux != "enforcing" {
		return nil
	}
	res, err := c.Run(ctx, "cat /sys/fs/selinux/enforce 2>/dev/null || echo off")
	if err != nil {
		return fmt.Errorf("read SELinux mode of the build guest: %w", err)
	}
	mode := map[string]string{"1": "Enforcing", "0": "Permissive"}[strings.TrimSpace(res.Stdout)]
	if mode == "" {
		mode = "Disabled"
	}
	if mode != "Enforcing" {
		return fmt.Errorf("%s: selinux: the spec asks for enforcing but the build guest runs %q; the build stops here", b.spec.Path, mode)
	}
	return nil
}

// checkDenials fails the build when a step caused an SELinux denial that
// the spec does not accept (avc: in the spec, each with a reason).
func (b *build) checkDenials(ctx context.Context, c *sshx.Client, step string) error {
	if b.spec.SELinux == "disabled" {
		return nil
	}
	res, err := c.Run(ctx, "sudo -n sh -c "+runx.Quote(verify.DenialsCommand(b.spec.AcceptedDenials())))
	if err != nil {
		return fmt.Errorf("read the build guest's audit log: %w", err)
	}
	lines := verify.Denials(res.Stdout)
	if len(lines) == 0 {
		return nil
	}
	fmt.Fprintf(b.opts.Log, "--- SELinux denials after step %s\n%s\n", step, res.Stdout)
	shown := lines
	if len(shown) > 5 {
		shown = shown[:5]
	}
	return fmt.Errorf("%s: step %q: %d SELinux denial(s) not accepted by the spec (fix the policy, or list them under avc: with a reason):\n  %s",
		b.spec.Path, step, len(lines), strings.Join(shown, "\n  "))
}

// SealScript is the script that seals a build guest, for tools that must
// leave an image in the same state (the Packer peer of `bench peers`).
func SealScript() string { return sealScript }
