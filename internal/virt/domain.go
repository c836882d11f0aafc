package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// MachineSpec is what a labforge guest is made of.
type MachineSpec struct {
	Name        string // libvirt domain name
	Description string
	Accel       Accel
	MemoryMiB   uint
	CPUs        uint
	Disk        string   // qcow2 overlay, the guest's only disk
	Seed        string   // cloud-init seed ISO ("" for none)
	Firmware    Firmware // zero: libvirt picks the hypervisor's own UEFI firmware
	NVRAM       string   // the guest's own copy of the variable store ("" with Firmware)
	Console     string   // serial console log file
	SSHPort     int      // host port on 127.0.0.1 forwarded to the guest's 22
	// Outside lets the guest open connections through slirp to whatever
	// the hypervisor reaches, its own loopback included (slirp's gateway
	// 10.0.2.2 is the host's 127.0.0.1). Off, slirp runs restricted: the
	// guest keeps DHCP and the SSH forward in, and reaches nothing out.
	Outside bool
}

// netdevID names the user-mode network backend in the QEMU command line.
const netdevID = "lfnet0"

// DomainXML renders the libvirt definition of m.
func DomainXML(m MachineSpec) (string, error) {
	cpu := &libvirtxml.DomainCPU{Mode: "maximum"}
	if m.Accel == KVM {
		cpu = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	d := &libvirtxml.Domain{
		Type:        m.Accel.DomainType(),
		Name:        m.Name,
		Description: m.Description,
		Memory:      &libvirtxml.DomainMemory{Value: m.MemoryMiB, Unit: "MiB"},
		VCPU:        &libvirtxml.DomainVCPU{Value: m.CPUs},
		CPU:         cpu,
		OS: &libvirtxml.DomainOS{
			Type:   &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "q35", Type: "hvm"},
			Loader: &libvirtxml.DomainLoader{Path: m.Firmware.Code, Readonly: "yes", Type: "pflash", Secure: "no"},
			NVRam:  &libvirtxml.DomainNVRam{NVRam: m.NVRAM, Template: m.Firmware.Vars},
		},
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		// A new VM generation ID on every restore: a kernel with the
		// vmgenid driver reseeds its RNG when a saved guest is cloned.
		GenID:      &libvirtxml.DomainGenID{},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "scsi", Model: "virtio-scsi"}},
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Discard: "unmap"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: m.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: m.Console}},
			}},
			RNGs: []libvirtxml.DomainRNG{{Model: "virtio", Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}}}},
		},
		// libvirt 9 (Debian 12) has no passt, and its own user-mode
		// interface cannot forward ports: QEMU's slirp is set up directly,
		// the forward bound to loopback only. q35 needs an explicit slot.
		QEMUCommandline: &libvirtxml.DomainQEMUCommandline{Args: qemuArgs(
			"-netdev", NetdevArg(m),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,bus=pcie.0,addr=0x10", netdevID),
		)},
	}
	d.Devices.Serials[0].Source.File.Path = m.Console
	d.Devices.Serials[0].Target = &libvirtxml.DomainSerialTarget{Port: new(uint)}
	if m.Seed != "" {
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "cdrom",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: m.Seed}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "scsi"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	if m.Firmware.Code == "" {
		// Another host's OVMF may live elsewhere: libvirt chooses from
		// its firmware descriptors, without Secure Boot, which the
		// unsigned systemd-boot on labforge disks needs. The variable
		// store goes to libvirt's nvram directory there.
		d.OS.Loader, d.OS.NVRam = nil, nil
		d.OS.Firmware = "efi"
		d.OS.FirmwareInfo = &libvirtxml.DomainOSFirmwareInfo{Features: []libvirtxml.DomainOSFirmwareFeature{
			{Enabled: "no", Name: "secure-boot"}, {Enabled: "no", Name: "enrolled-keys"}}}
	}
	// the serial device needs its type; libvirtxml takes it from Source.
	return d.Marshal()
}

// NetdevArg is the guest's slirp backend: restricted unless m.Outside, so
// an untrusted guest reaches neither the hypervisor's loopback nor what
// the hypervisor reaches (a cloud's metadata service, its LAN).
func NetdevArg(m MachineSpec) string {
	restrict := "on"
	if m.Outside {
		restrict = "off"
	}
	return fmt.Sprintf("user,id=%s,restrict=%s,hostfwd=tcp:127.0.0.1:%d-:22", netdevID, restrict, m.SSHPort)
}

func qemuArgs(args ...string) []libvirtxml.DomainQEMUCommandlineArg {
	out := make([]libvirtxml.DomainQEMUCommandlineArg, len(args))
	for i, a := range args {
		out[i] = libvirtxml.DomainQEMUCommandlineArg{Value: a}
	}
	return out
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. QEMU binds it
// moments later; a lost race shows up as a start error naming the port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ErrPortInUse means another socket already holds the port.
var ErrPortInUse = errors.New("already in use")

// CheckPort says whether 127.0.0.1:port can be bound now, as QEMU's
// forward will bind it. A taken port gives an error wrapping ErrPortInUse.
func CheckPort(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port 127.0.0.1:%d is %w", port, ErrPortInUse)
		}
		return fmt.Errorf("port 127.0.0.1:%d: %w", port, err)
	}
	return l.Close()
}

// IsPortConflict says whether a failed Start was QEMU failing to bind the
// SSH forward on port. QEMU says it could not set up the host forwarding
// rule, quoting the rule and so the port; the system's "Address already
// in use" is taken too, for a wording that passes the reason on.
func IsPortConflict(err error, port int) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "address already in use") ||
		strings.Contains(msg, "host forwarding rule") && strings.Contains(msg, fmt.Sprintf("127.0.0.1:%d-", port))
}

// Start defines and starts the domain. A domain that was defined but did
// not start is undefined again, with its NVRAM.
func (c *Conn) Start(ctx context.Context, m MachineSpec) (libvirt.Domain, error) {
	xml, err := DomainXML(m)
	if err != nil {
		return libvirt.Domain{}, fmt.Errorf("domain XML: %w", err)
	}
	dom, err := c.DomainDefineXMLFlags(xml, libvirt.DomainDefineValidate)
	if err != nil {
		return libvirt.Domain{}, fmt.Errorf("define %s: %w", m.Name, err)
	}
	if err := c.DomainCreate(dom); err != nil {
		_ = c.DomainUndefineFlags(dom, libvirt.DomainUndefineNvram)
		return libvirt.Domain{}, fmt.Errorf("start %s: %w", m.Name, err)
	}
	return dom, nil
}

// Remove stops (hard) and undefines the domain called name, with its
// NVRAM. A domain that does not exist is not an error.
func (c *Conn) Remove(name string) error {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		if isNoDomain(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if state, _, err := c.DomainGetState(dom, 0); err == nil && libvirt.DomainState(state) != libvirt.DomainShutoff {
		if err := c.DomainDestroy(dom); err != nil && !isNoDomain(err) {
			return fmt.Errorf("destroy %s: %w", name, err)
		}
	}
	if err := c.DomainUndefineFlags(dom, libvirt.DomainUndefineNvram); err != nil && !isNoDomain(err) {
		return fmt.Errorf("undefine %s: %w", name, err)
	}
	return nil
}

// Exists says whether a domain called name is defined.
func (c *Conn) Exists(name string) bool {
	_, err := c.DomainLookupByName(name)
	return err == nil
}

// Running says whether the domain called name is running.
func (c *Conn) Running(name string) bool { return c.inState(name, libvirt.DomainRunning) }

// Paused says whether the domain called name exists and is paused (virsh
// suspend, or libvirt pausing it when its disk filled up).
func (c *Conn) Paused(name string) bool {
	return c.inState(name, libvirt.DomainPaused, libvirt.DomainPmsuspended)
}

func (c *Conn) inState(name string, states ...libvirt.DomainState) bool {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		return false
	}
	state, _, err := c.DomainGetState(dom, 0)
	return err == nil && slices.Contains(states, libvirt.DomainState(state))
}

// List names the defined domains whose names start with prefix.
func (c *Conn) List(prefix string) ([]string, error) {
	doms, _, err := c.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range doms {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

func isNoDomain(err error) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(libvirt.ErrNoDomain)
}

// ErrStopped means the domain stopped while something waited on it.
var ErrStopped = errors.New("domain stopped")

// WatchStop returns a context that is cancelled, with cause ErrStopped,
// when the domain called name stops or crashes: waiting for a guest that
// is gone ends at once instead of at a timeout.
func (c *Conn) WatchStop(ctx context.Context, name string) (context.Context, context.CancelFunc, error) {
	wctx, cancel := context.WithCancelCause(ctx)
	unwatch, err := c.watch(name, func(ev libvirt.DomainEventLifecycleMsg) {
		switch libvirt.DomainEventType(ev.Event) {
		case libvirt.DomainEventStopped, libvirt.DomainEventCrashed:
			cancel(fmt.Errorf("%w: %s (%s)", ErrStopped, name, stopReason(ev.Detail)))
		}
	})
	if err != nil {
		cancel(nil)
		return nil, nil, err
	}
	// A domain that stopped before the subscription is caught here.
	if !c.Running(name) {
		cancel(fmt.Errorf("%w: %s is not running", ErrStopped, name))
	}
	return wctx, func() { unwatch(); cancel(nil) }, nil
}

// watch calls fn with every lifecycle event of the domain called name.
// libvirt takes one lifecycle subscription per connection, so the first
// watcher starts it and every watcher shares it.
func (c *Conn) watch(name string, fn func(libvirt.DomainEventLifecycleMsg)) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watchers == nil {
		events, err := c.LifecycleEvents(context.Background())
		if err != nil {
			return nil, fmt.Errorf("subscribe to lifecycle events: %w", err)
		}
		c.watchers = map[int]watcher{}
		go func() {
			for ev := range events {
				c.mu.Lock()
				var fns []func(libvirt.DomainEventLifecycleMsg)
				for _, w := range c.watchers {
					if w.name == ev.Dom.Name {
						fns = append(fns, w.fn)
					}
				}
				c.mu.Unlock()
				for _, f := range fns {
					f(ev)
				}
			}
		}()
	}
	c.nextID++
	id := c.nextID
	c.watchers[id] = watcher{name: name, fn: fn}
	return func() {
		c.mu.Lock()
		delete(c.watchers, id)
		c.mu.Unlock()
	}, nil
}

type watcher struct {
	name string
	fn   func(libvirt.DomainEventLifecycleMsg)
}

func stopReason(detail int32) string {
	reasons := map[libvirt.DomainEventStoppedDetailType]string{
		libvirt.DomainEventStoppedShutdown: "shut down", libvirt.DomainEventStoppedDestroyed: "destroyed",
		libvirt.DomainEventStoppedCrashed: "crashed", libvirt.DomainEventStoppedFailed: "failed",
	}
	if r, ok := reasons[libvirt.DomainEventStoppedDetailType(detail)]; ok {
		return r
	}
	return "detail " + strconv.Itoa(int(detail))
}

// WaitStopped waits, through lifecycle events, until the domain called
// name is no longer running.
func (c *Conn) WaitStopped(ctx context.Context, name string, timeout time.Duration) error {
	wctx, stop, err := c.WatchStop(ctx, name)
	if err != nil {
		return err
	}
	defer stop()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-wctx.Done():
		if errors.Is(context.Cause(wctx), ErrStopped) {
			return nil
		}
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%s did not power off within %s", name, timeout)
	}
}

// SnapshotDisk freezes the running domain's disk dev: from now on QEMU
// writes to a new qcow2 overlay at path, whose backing file is the old one.
func (c *Conn) SnapshotDisk(name, dev, path string) error {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		return err
	}
	x := &libvirtxml.DomainSnapshot{Disks: &libvirtxml.DomainSnapshotDisks{Disks: []libvirtxml.DomainSnapshotDisk{
		{Name: dev, Snapshot: "external", Driver: &libvirtxml.DomainDiskDriver{Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}}},
		{Name: "sda", Snapshot: "no"}, // the read-only seed
	}}}
	doc, err := x.Marshal()
	if err != nil {
		return err
	}
	flags := libvirt.DomainSnapshotCreateDiskOnly | libvirt.DomainSnapshotCreateNoMetadata | libvirt.DomainSnapshotCreateAtomic
	if _, err := c.DomainSnapshotCreateXML(dom, doc, uint32(flags)); err != nil {
		return fmt.Errorf("snapshot %s of %s to %s: %w", dev, name, path, err)
	}
	return nil
}

// Boot starts the defined domain called name, or resumes it when paused.
// A running domain is left as it is.
func (c *Conn) Boot(name string) error {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		if isNoDomain(err) {
			return fmt.Errorf("no domain %s: its definition is gone (`labforge down` removes the rest)", name)
		}
		return err
	}
	state, _, err := c.DomainGetState(dom, 0)
	if err != nil {
		return err
	}
	switch libvirt.DomainState(state) {
	case libvirt.DomainRunning:
		return nil
	case libvirt.DomainPaused, libvirt.DomainPmsuspended:
		return c.DomainResume(dom)
	}
	if err := c.DomainCreate(dom); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// Shutdown asks the guest called name to power off (ACPI) and waits up to
// timeout, then pulls the plug. A domain already off is left as it is.
func (c *Conn) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		return err
	}
	if state, _, err := c.DomainGetState(dom, 0); err == nil && libvirt.DomainState(state) == libvirt.DomainShutoff {
		return nil
	}
	if err := c.DomainShutdown(dom); err != nil && !isNoDomain(err) {
		return fmt.Errorf("shut down %s: %w", name, err)
	}
	if err := c.WaitStopped(ctx, name, timeout); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return err
	}
	if err := c.DomainDestroy(dom); err != nil && !isNoDomain(err) {
		return fmt.Errorf("power off %s: %w", name, err)
	}
	return nil
}

// RSS is the host memory the running domain's QEMU holds, in bytes: what a
// guest really costs its hypervisor (guest pages never touched are not in it).
func (c *Conn) RSS(name string) (uint64, error) {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		return 0, err
	}
	stats, err := c.DomainMemoryStats(dom, uint32(libvirt.DomainMemoryStatNr), 0)
	if err != nil {
		return 0, err
	}
	for _, s := range stats {
		if s.Tag == int32(libvirt.DomainMemoryStatRss) {
			return s.Val << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: libvirt reports no RSS", name)
}
