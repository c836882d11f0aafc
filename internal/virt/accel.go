package virt

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"
)

// Accel is how guests are run: "kvm" or "tcg" (QEMU's emulator).
type Accel string

const (
	KVM Accel = "kvm"
	TCG Accel = "tcg"
)

// DomainType is libvirt's name for the accelerator.
func (a Accel) DomainType() string {
	if a == KVM {
		return "kvm"
	}
	return "qemu"
}

// ProbeAccel finds out whether KVM really runs guests on this host. The
// device can exist and still fail (QEMU aborts on an MSR it cannot set),
// so it starts a real guest under KVM and sees whether it stays up. The
// answer is kept in stateDir until the host reboots.
func ProbeAccel(ctx context.Context, stateDir string) (Accel, string) {
	if a := os.Getenv("LABFORGE_ACCEL"); a == "kvm" || a == "tcg" {
		return Accel(a), "set by LABFORGE_ACCEL"
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	cachePath := filepath.Join(stateDir, "accel.json")
	var cached struct{ BootID, Accel, Why string }
	if data, err := os.ReadFile(cachePath); err == nil && json.Unmarshal(data, &cached) == nil &&
		cached.BootID == strings.TrimSpace(string(boot)) && cached.Accel != "" {
		return Accel(cached.Accel), cached.Why + " (probed earlier this boot)"
	}
	a, why := probe(ctx)
	cached.BootID, cached.Accel, cached.Why = strings.TrimSpace(string(boot)), string(a), why
	if data, err := json.Marshal(cached); err == nil {
		_ = os.MkdirAll(stateDir, 0o755)
		_ = os.WriteFile(cachePath, data, 0o644)
	}
	return a, why
}

func probe(ctx context.Context) (Accel, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return TCG, "no usable /dev/kvm: " + err.Error()
	}
	f.Close()
	fw, err := FindFirmware()
	if err != nil {
		return TCG, err.Error()
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return TCG, "qemu-system-x86_64 not installed"
	}
	// Firmware alone is a real guest: it runs for seconds before it finds
	// nothing to boot, long enough to show whether KVM works.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-cpu", "host", "-machine", "q35",
		"-m", "256", "-nodefaults", "-display", "none", "-serial", "none",
		"-drive", "if=pflash,format=raw,readonly=on,file="+fw.Code, "-no-reboot")
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	// A guest that KVM cannot run does not always end QEMU: on an
	// emulation failure QEMU reports "KVM internal error" and pauses the
	// guest, which then looks alive until the deadline (seen on nested
	// hosts, where every labforge guest then hung paused in its firmware).
	if ctx.Err() == context.DeadlineExceeded && !kvmFailed(msg) {
		return KVM, "a probe guest ran under KVM"
	}
	if kvmFailed(msg) {
		err = fmt.Errorf("the guest stopped")
		if i := strings.Index(msg, "KVM internal error"); i >= 0 {
			msg = msg[i:]
		}
	}
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i]
	}
	return TCG, fmt.Sprintf("KVM probe guest failed (%v: %s); using TCG emulation", err, msg)
}

// OffersKVM says whether the hypervisor's libvirt offers the kvm domain
// type. It may still fail to run guests (see ProbeAccel); a remote host is
// trusted only as far as this machine's probe: KVM where both have it.
func (c *Conn) OffersKVM() bool {
	x, err := c.ConnectGetCapabilities()
	var caps libvirtxml.Caps
	if err != nil || caps.Unmarshal(x) != nil {
		return false
	}
	for _, g := range caps.Guests {
		for _, d := range g.Arch.Domains {
			if g.Arch.Name == "x86_64" && d.Type == "kvm" {
				return true
			}
		}
	}
	return false
}

// kvmFailed says whether QEMU's output shows KVM giving up on the guest.
func kvmFailed(out string) bool {
	return strings.Contains(out, "KVM internal error") || strings.Contains(out, "emulation failure") ||
		strings.Contains(out, "kvm run failed")
}
