// Package doctor checks that a host can build and boot lab hosts, and
// says how to fix what it cannot.
package doctor

import (
	"context"
	"fmt"
	"github.com/labforge/labforge/builder/gobuild"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/labforge/labforge/internal/virt"
)

// Check is one preflight finding.
type Check struct {
	Name   string
	OK     bool
	Warn   bool // a problem that does not stop labforge
	Detail string
	Fix    string
}

// tools are the host commands labforge runs, with the Debian package
// that brings each.
var tools = []struct{ cmd, pkg string }{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"qemu-img", "qemu-utils"},
	{"debootstrap", "debootstrap"},
	{"mke2fs", "e2fsprogs"},
	{"mkfs.fat", "dosfstools"},
	{"mcopy", "mtools"},
	{"chroot", "coreutils"},
}

// MinFreeBytes is the space a cold build of the default lab host needs.
const MinFreeBytes = 10 << 30

// Run checks the host. cacheDir and stateDir are where labforge writes.
func Run(ctx context.Context, cacheDir, stateDir string) []Check {
	var out []Check
	if os.Geteuid() != 0 {
		out = append(out, Check{Name: "root", Detail: "running as uid " + fmt.Sprint(os.Geteuid()),
			Fix: "run labforge as root: debootstrap, chroot and the system libvirtd need it"})
	} else {
		out = append(out, Check{Name: "root", OK: true, Detail: "running as root"})
	}
	for _, t := range tools {
		c := Check{Name: t.cmd}
		if p, err := exec.LookPath(t.cmd); err == nil {
			c.OK, c.Detail = true, p
		} else {
			c.Detail, c.Fix = "not found", "apt-get install "+t.pkg
		}
		out = append(out, c)
	}
	gc := Check{Name: "go (builds Kubernetes and the guest's programs)"}
	if p, err := gobuild.GoTool(); err == nil {
		gc.OK, gc.Detail = true, p
	} else {
		gc.Detail, gc.Fix = err.Error(), "scripts/install (installs Go when the machine has none)"
	}
	out = append(out, gc)
	fw := Check{Name: "UEFI firmware"}
	if f, err := virt.FindFirmware(); err == nil {
		fw.OK, fw.Detail = true, f.Code
	} else {
		fw.Detail, fw.Fix = err.Error(), "apt-get install ovmf"
	}
	out = append(out, fw)

	lv := Check{Name: "libvirtd"}
	if c, err := virt.Connect(ctx, false); err == nil {
		lv.OK, lv.Detail = true, "answers at "+c.Socket
		c.Close()
	} else {
		lv.Warn, lv.Detail = true, err.Error()
		lv.Fix = "labforge starts it when needed; or: systemctl start libvirtd (or virtlogd -d && libvirtd -d without systemd)"
	}
	out = append(out, lv)

	accel, why := virt.ProbeAccel(ctx, stateDir)
	ac := Check{Name: "acceleration", OK: true, Detail: fmt.Sprintf("%s: %s", accel, why)}
	if accel == virt.TCG {
		ac.OK, ac.Warn = false, true
		ac.Fix = "guests run under emulation, several times slower; on bare metal enable VT-x/AMD-V and load kvm_intel or kvm_amd"
	}
	out = append(out, ac)

	out = append(out, kvmModeCheck())
	out = append(out, diskCheck(cacheDir))
	return out
}

// kvmModeCheck catches a root-only /dev/kvm: libvirt then sees KVM appear
// and vanish between its probes and re-probes QEMU on every call, which
// makes each domain definition take about a minute.
func kvmModeCheck() Check {
	c := Check{Name: "/dev/kvm mode"}
	st, err := os.Stat("/dev/kvm")
	if err != nil {
		c.OK, c.Detail = true, "no /dev/kvm"
		return c
	}
	if st.Mode().Perm()&0o060 == 0o060 {
		c.OK, c.Detail = true, st.Mode().Perm().String()
		return c
	}
	c.Warn, c.Detail = true, st.Mode().Perm().String()+": libvirt re-probes QEMU on every call"
	c.Fix = "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (what udev does; scripts/install does it)"
	return c
}

func diskCheck(dir string) Check {
	c := Check{Name: "disk space"}
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		c.Detail, c.Fix = err.Error(), "check that "+dir+" can be created"
		return c
	}
	free := int64(st.Bavail) * st.Bsize
	c.Detail = fmt.Sprintf("%.1f GiB free for %s", float64(free)/(1<<30), dir)
	if free >= MinFreeBytes {
		c.OK = true
	} else {
		c.Fix = fmt.Sprintf("free space, or set LABFORGE_CACHE to a file system with %d GiB free", MinFreeBytes>>30)
	}
	return c
}
