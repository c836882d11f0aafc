package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/provision"
)

// UpOptions say what to boot and how.
type UpOptions struct {
	Name        string
	Hostname    string // the guest's; "" = Name
	Spec        string // the spec file, recorded for `verify`
	Image       string // the built qcow2 the overlay sits on
	Overlay     string // where to make the overlay ("" = in the instance directory)
	User        string
	MemoryMiB   uint
	CPUs        uint
	Accel       virt.Accel
	BootTimeout time.Duration // image boot to SSH-ready
	Verify      string        // the spec's verify suite, recorded
	SSHPort     int           // host port on 127.0.0.1 for the guest's SSH; 0 = a free one
	// Outside gives the guest the outside network (see virt.MachineSpec);
	// students' hosts never have it.
	Outside bool
	// Golden, on a remote hypervisor, is the volume in labforge's pool
	// holding Image, which the guest's overlay volume is backed by.
	Golden string
}

// Up boots a new instance and waits until its SSH answers. When it fails
// or ctx is cancelled (Ctrl-C), nothing is left: no domain, no files.
func Up(ctx context.Context, c *virt.Conn, o UpOptions) (inst *Instance, client *sshx.Client, err error) {
	unlock, err := claim(c, o.Name, o.SSHPort)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	dom := DomainPrefix + o.Name
	if c.Remote() && o.Golden == "" {
		return nil, nil, fmt.Errorf("instance %s: no golden volume on %s", o.Name, c.Target().Label())
	}
	dir := Dir(o.Name)
	if err := PrivateDir(dir); err != nil {
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
	if c.Remote() {
		inst.Host = c.URI
		// The record goes first: it names the hypervisor whose volumes
		// a killed labforge would leave.
		if err := inst.save(); err != nil {
			return nil, nil, err
		}
	}
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
	inst.InstanceID = dom + "-" + fmt.Sprint(time.Now().UnixNano())
	hostname := o.Hostname
	if hostname == "" {
		hostname = o.Name
	}
	seed := provision.Seed{InstanceID: inst.InstanceID, Hostname: hostname,
		User: o.User, AuthorizedKey: userKey.AuthorizedKey,
		HostKeyPrivate: string(hostKey.PrivatePEM), HostKeyPublic: hostKey.AuthorizedKey}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := seed.WriteISO(seedPath); err != nil {
		return nil, nil, err
	}
	m := virt.MachineSpec{Name: dom, Description: "labforge instance " + o.Name + " of " + o.Spec,
		Accel: o.Accel, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs, Outside: o.Outside}
	if c.Remote() {
		err = remoteDisks(ctx, c, o.Golden, seedPath, &m)
	} else {
		err = localDisks(ctx, o, seedPath, inst, &m)
	}
	if err != nil {
		return nil, nil, err
	}
	start := func(port int) error {
		inst.SSHPort, m.SSHPort = port, port
		// The record goes down before the domain starts, so a killed
		// labforge leaves something that names what to clean.
		if err := inst.save(); err != nil {
			return err
		}
		_, err := c.Start(ctx, m)
		return err
	}
	if _, err := startOnPort(o.SSHPort, c.FreePort, start, func() error { return c.Remove(dom) }); err != nil {
		return nil, nil, err
	}
	client, err = WaitSSH(ctx, c, inst, o.BootTimeout)
	if err != nil {
		return nil, nil, err
	}
	if err := inst.ready(); err != nil {
		client.Close()
		return nil, nil, err
	}
	return inst, client, nil
}

// ready records a guest that answered on SSH: the files for the system
// ssh client, then the record that says it came up.
func (i *Instance) ready() error {
	if err := i.writeSSHFiles(); err != nil {
		return err
	}
	i.Ready = true
	return i.save()
}

// claim takes name for a new instance: it holds the instance's lock
// (the caller releases it), refuses a host that once came up and removes
// what a killed run left under that name.
func claim(c *virt.Conn, name string, port int) (_ func(), err error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	unlock, err := lock(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// We hold the lock, so no other labforge is working on this name: a
	// record that never became ready is what a killed `up` left behind,
	// and is cleaned below like any other leftover.
	if existing, lerr := Load(name); lerr == nil && existing.Ready {
		// A host that once came up holds the student's work: whether it
		// runs, is shut off (a host reboot, poweroff in the guest) or
		// paused, up never touches it.
		if c.Running(existing.Domain) {
			return nil, fmt.Errorf("instance %q is already up (ssh port %d); run `labforge down %s` first", name, existing.SSHPort, name)
		}
		if c.Paused(existing.Domain) {
			return nil, fmt.Errorf("instance %q exists and is paused; `labforge start %s` resumes it, `labforge down %s` removes it", name, name, name)
		}
		return nil, fmt.Errorf("instance %q exists and is stopped; `labforge start %s` boots it again with its disk, `labforge down %s` removes it", name, name, name)
	}
	// Anything left by an earlier run that was killed goes first.
	if err := removeAll(c, name); err != nil {
		return nil, fmt.Errorf("clean stale instance %s: %w", name, err)
	}
	// Checked after the cleanup: the stale domain may have held the port.
	if port != 0 && !c.Remote() {
		if err := CheckSSHPort(port); err != nil {
			return nil, err
		}
	}
	return unlock, nil
}

// localDisks makes the guest's overlay on the image in the instance's
// directory, with the host's firmware and the console logged beside it.
func localDisks(ctx context.Context, o UpOptions, seed string, inst *Instance, m *virt.MachineSpec) error {
	overlay := filepath.Join(inst.dir, "disk.qcow2")
	if o.Overlay != "" {
		overlay = o.Overlay
	}
	if err := runx.Run(ctx, nil, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", o.Image, overlay); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	// What the guest writes (a cluster's CA, the student's work) is the
	// guest's alone: libvirt hands the file to its QEMU user while it runs.
	if err := os.Chmod(overlay, 0o600); err != nil {
		return err
	}
	fw, err := virt.FindFirmware()
	if err != nil {
		return err
	}
	m.Disk, m.Seed, m.Firmware, m.NVRAM, m.Console = overlay, seed, fw, filepath.Join(inst.dir, "nvram.fd"), inst.ConsolePath()
	return nil
}

// PrivateDir makes dir (an instance's, a warm state's) readable by root
// and the hypervisor's group only, as privateDir does with QEMU's group.
func PrivateDir(dir string) error { return privateDir(dir, virt.HypervisorGID(virt.QEMUConf)) }

// privateDir makes an instance's directory readable by root and the
// hypervisor's group only (gid, or no group at all when -1: QEMU then
// still passes through to the files libvirt gives it, but nobody lists
// them). The seed holds the guest's SSH host key, the overlay all the
// guest writes.
func privateDir(dir string, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mode := os.FileMode(0o711)
	switch {
	case os.Geteuid() != 0:
		// Not root: the user's own (session) QEMU runs as this user.
		mode = 0o700
	case gid >= 0:
		if err := os.Chown(dir, os.Getuid(), gid); err != nil {
			return err
		}
		mode = 0o750
	}
	return os.Chmod(dir, mode)
}

// remoteDisks makes the guest's volumes on a remote hypervisor: an overlay
// backed by the golden volume, the seed uploaded, and an empty console log
// that libvirt can read back. The firmware is the hypervisor's own.
func remoteDisks(ctx context.Context, c *virt.Conn, golden, seed string, m *virt.MachineSpec) error {
	g, err := c.Volume(golden)
	if err != nil {
		return err
	}
	if g == nil {
		return fmt.Errorf("no golden volume %s in pool %s on %s", golden, virt.PoolName, c.Target().Label())
	}
	vols := volumeNames(m.Name)
	x, err := virt.VolumeXML(vols[0], "qcow2", g.Capacity, g.Path)
	if err != nil {
		return err
	}
	if m.Disk, err = c.CreateVolume(x); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if m.Seed, err = c.UploadFile(ctx, vols[1], "raw", 0, seed); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if x, err = virt.VolumeXML(vols[2], "raw", 0, ""); err != nil {
		return err
	}
	if m.Console, err = c.CreateVolume(x); err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	return nil
}

// volumeNames are a remote guest's volumes, after its domain: the
// overlay, the seed and the console log.
func volumeNames(dom string) []string {
	return []string{dom + ".qcow2", dom + "-seed.iso", dom + "-console.log"}
}

// DiskBytes is the space the instance's overlay takes on its hypervisor,
// or -1.
func (i *Instance) DiskBytes(c *virt.Conn) int64 {
	if i.Host == "" {
		return fsx.Allocated(filepath.Join(i.dir, "disk.qcow2"))
	}
	v, err := c.Volume(volumeNames(i.Domain)[0])
	if err != nil || v == nil {
		return -1
	}
	return int64(v.Allocation)
}

// CheckSSHPort fails, in one line naming the port, when a port the user
// chose for SSH cannot be bound now: better at once than after a build.
func CheckSSHPort(port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("ssh port %d is not a TCP port (1-65535)", port)
	}
	if err := virt.CheckPort(port); err != nil {
		if errors.Is(err, virt.ErrPortInUse) {
			return portTaken(port)
		}
		return fmt.Errorf("ssh port: %w", err)
	}
	return nil
}

func portTaken(port int) error {
	return fmt.Errorf("ssh port 127.0.0.1:%d is already in use; pick another --ssh-port or leave it out to get a free one", port)
}

// startOnPort starts the domain with its SSH forward on port, or on a
// port from pick when port is 0. A picked port is free when picked but
// QEMU binds it moments later: when another program took it in between,
// the failed domain is removed and a new port tried, once. A port the
// user chose is reported as taken instead.
func startOnPort(port int, pick func() (int, error), start func(port int) error, remove func() error) (int, error) {
	for attempt := 1; ; attempt++ {
		p := port
		if p == 0 {
			var err error
			if p, err = pick(); err != nil {
				return 0, fmt.Errorf("pick a free ssh port: %w", err)
			}
		}
		err := start(p)
		if err == nil {
			return p, nil
		}
		if !virt.IsPortConflict(err, p) {
			return 0, err
		}
		if port != 0 {
			return 0, portTaken(p)
		}
		if attempt == 2 {
			return 0, fmt.Errorf("ssh port 127.0.0.1:%d was taken before QEMU could bind it, twice in a row: %w", p, err)
		}
		// Start undefines a domain that failed to start; this makes sure,
		// so the retry defines a fresh one.
		if rerr := remove(); rerr != nil {
			return 0, errors.Join(err, fmt.Errorf("remove the failed domain: %w", rerr))
		}
	}
}

// WaitSSH waits for the guest's SSH, failing at once if the domain stops
// or (on this machine) its kernel panics, and quoting the console when it
// never answers.
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
	// The console is watched where it is a file here; on a remote
	// hypervisor it is a volume, and reading it every few seconds would
	// be a libvirt stream each time over the class's shared connection.
	pctx := wctx
	if inst.Host == "" {
		var unwatch context.CancelFunc
		pctx, unwatch = watchPanic(wctx, func() ([]byte, error) {
			_, data, err := consoleBytes(c, inst, consoleTailBytes)
			return data, err
		}, 2*time.Second)
		defer unwatch()
	}
	tctx, cancel := context.WithTimeout(pctx, timeout)
	defer cancel()
	client, err := sshx.Dial(tctx, cfg)
	if err == nil {
		return client, nil
	}
	switch cause := context.Cause(pctx); {
	case errors.Is(cause, ErrPanicked):
		return nil, fmt.Errorf("%s: %w\n%s", inst.Domain, cause, consoleTail(c, inst, 15))
	case errors.Is(cause, virt.ErrStopped):
		err = cause
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%s never answered on SSH within %s: %w\n%s", inst.Domain, timeout, err, consoleTail(c, inst, 15))
}

// consoleTail quotes the last n lines of the serial console log.
func consoleTail(c *virt.Conn, inst *Instance, n int) string {
	where, data, err := consoleBytes(c, inst, consoleTailBytes)
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "last lines of the serial console (" + where + "):\n  " + strings.Join(lines, "\n  ")
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
	if inst, err := Load(name); err == nil {
		// The guest may run on another hypervisor: go there. Down takes
		// no context (its callers run it after Ctrl-C too), so the
		// connection gets its own bound.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rc, done, err := inst.hypervisor(ctx, c)
		if err != nil {
			return err
		}
		defer done()
		c = rc
	}
	if _, err := os.Stat(Dir(name)); os.IsNotExist(err) && !c.Exists(DomainPrefix+name) {
		return fmt.Errorf("%w %q", ErrNoInstance, name)
	}
	return removeAll(c, name)
}

func removeAll(c *virt.Conn, name string) error {
	dom := DomainPrefix + name
	if err := c.Remove(dom); err != nil {
		return err
	}
	if c.Remote() {
		for _, v := range volumeNames(dom) {
			if err := c.DeleteVolume(v); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(Dir(name))
}

// lock serialises up and down of one instance across processes.
func lock(name string) (func(), error) {
	if err := os.MkdirAll(paths.Instances(), 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsx.Lock(filepath.Join(paths.Instances(), "."+name+".lock"), false)
	if err != nil {
		if errors.Is(err, fsx.ErrLocked) {
			return nil, fmt.Errorf("instance %q is busy: another labforge is bringing it up or down", name)
		}
		return nil, err
	}
	return unlock, nil
}
