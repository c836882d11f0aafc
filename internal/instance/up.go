package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/provision"
)

// UpOptions say what to boot and how.
type UpOptions struct {
	Name        string
	Spec        string // the spec file, recorded for `verify`
	Image       string // the built qcow2 the overlay sits on
	Overlay     string // where to make the overlay ("" = in the instance directory)
	User        string
	MemoryMiB   uint
	CPUs        uint
	Accel       virt.Accel
	BootTimeout time.Duration // image boot to SSH-ready
	Verify      string        // the spec's verify suite, recorded
}

// Up boots a new instance and waits until its SSH answers. When it fails
// or ctx is cancelled (Ctrl-C), nothing is left: no domain, no files.
func Up(ctx context.Context, c *virt.Conn, o UpOptions) (inst *Instance, client *sshx.Client, err error) {
	if err := ValidName(o.Name); err != nil {
		return nil, nil, err
	}
	unlock, err := lock(o.Name)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	dom := DomainPrefix + o.Name
	// We hold the lock, so no other labforge is working on this name: a
	// record that never became ready is what a killed `up` left behind,
	// and is cleaned below like any other leftover.
	if existing, lerr := Load(o.Name); lerr == nil && existing.Ready && c.Running(existing.Domain) {
		return nil, nil, fmt.Errorf("instance %q is already up (ssh port %d); run `labforge down %s` first", o.Name, existing.SSHPort, o.Name)
	}
	// Anything left by an earlier run that was killed goes first.
	if err := removeAll(c, o.Name); err != nil {
		return nil, nil, fmt.Errorf("clean stale instance %s: %w", o.Name, err)
	}
	dir := Dir(o.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			// Runs after Ctrl-C too: libvirt calls here do not take ctx.
			if rerr := removeAll(c, o.Name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", rerr))
			}
		}
	}()

	inst = &Instance{Name: o.Name, Domain: dom, Spec: o.Spec, Image: o.Image, User: o.User,
		Accel: string(o.Accel), Created: time.Now().UTC(), VerifyOn: o.Verify, dir: dir}
	userKey, err := sshx.NewKeyPair(o.User + "@" + dom)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(inst.KeyPath(), userKey.PrivatePEM, 0o600); err != nil {
		return nil, nil, err
	}
	hostKey, err := sshx.NewKeyPair("")
	if err != nil {
		return nil, nil, err
	}
	inst.HostKey = hostKey.AuthorizedKey
	seed := provision.Seed{InstanceID: dom + "-" + fmt.Sprint(time.Now().UnixNano()), Hostname: o.Name,
		User: o.User, AuthorizedKey: userKey.AuthorizedKey,
		HostKeyPrivate: string(hostKey.PrivatePEM), HostKeyPublic: hostKey.AuthorizedKey}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := seed.WriteISO(seedPath); err != nil {
		return nil, nil, err
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if o.Overlay != "" {
		overlay = o.Overlay
	}
	if err := runx.Run(ctx, nil, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", o.Image, overlay); err != nil {
		return nil, nil, fmt.Errorf("overlay: %w", err)
	}
	fw, err := virt.FindFirmware()
	if err != nil {
		return nil, nil, err
	}
	if inst.SSHPort, err = virt.FreePort(); err != nil {
		return nil, nil, err
	}
	m := virt.MachineSpec{Name: dom, Description: "labforge instance " + o.Name + " of " + o.Spec,
		Accel: o.Accel, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Disk: overlay, Seed: seedPath,
		Firmware: fw, NVRAM: filepath.Join(dir, "nvram.fd"), Console: inst.ConsolePath(), SSHPort: inst.SSHPort}
	// The record goes down before the domain starts, so a killed labforge
	// leaves something that names what to clean.
	if err := inst.save(); err != nil {
		return nil, nil, err
	}
	if _, err := c.Start(ctx, m); err != nil {
		return nil, nil, err
	}
	client, err = WaitSSH(ctx, c, inst, o.BootTimeout)
	if err != nil {
		return nil, nil, err
	}
	if err := inst.writeSSHFiles(); err != nil {
		client.Close()
		return nil, nil, err
	}
	inst.Ready = true
	if err := inst.save(); err != nil {
		client.Close()
		return nil, nil, err
	}
	return inst, client, nil
}

// WaitSSH waits for the guest's SSH, failing at once if the domain stops
// and quoting the console when it never answers.
func WaitSSH(ctx context.Context, c *virt.Conn, inst *Instance, timeout time.Duration) (*sshx.Client, error) {
	cfg, err := inst.SSHConfig()
	if err != nil {
		return nil, err
	}
	wctx, stop, err := c.WatchStop(ctx, inst.Domain)
	if err != nil {
		return nil, err
	}
	defer stop()
	tctx, cancel := context.WithTimeout(wctx, timeout)
	defer cancel()
	client, err := sshx.Dial(tctx, cfg)
	if err == nil {
		return client, nil
	}
	if cause := context.Cause(wctx); errors.Is(cause, virt.ErrStopped) {
		err = cause
	} else if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%s never answered on SSH within %s: %w\n%s", inst.Domain, timeout, err, consoleTail(inst.ConsolePath(), 15))
}

// consoleTail quotes the end of the serial console log.
func consoleTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "last lines of the serial console (" + path + "):\n  " + strings.Join(lines, "\n  ")
}

// Down destroys the instance's domain and deletes its files.
func Down(c *virt.Conn, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	unlock, err := lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(Dir(name)); os.IsNotExist(err) && !c.Exists(DomainPrefix+name) {
		return fmt.Errorf("no instance %q", name)
	}
	return removeAll(c, name)
}

func removeAll(c *virt.Conn, name string) error {
	if err := c.Remove(DomainPrefix + name); err != nil {
		return err
	}
	return os.RemoveAll(Dir(name))
}

// lock serialises up and down of one instance across processes.
func lock(name string) (func(), error) {
	if err := os.MkdirAll(paths.Instances(), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(paths.Instances(), "."+name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("instance %q is busy: another labforge is bringing it up or down", name)
	}
	return func() { f.Close() }, nil
}
