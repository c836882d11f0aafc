package virt

import (
	"bufio"
	"os"
	"os/user"
	"regexp"
	"strconv"
)

// QEMUConf is the system libvirtd's QEMU driver configuration.
const QEMUConf = "/etc/libvirt/qemu.conf"

var confGroupRe = regexp.MustCompile(`^\s*group\s*=\s*"([^"]+)"`)

// HypervisorGID is the group the system libvirtd runs QEMU with: the
// `group` of qemu.conf, else the distribution's default (Debian's
// libvirt-qemu, Fedora's qemu), or -1 when none exists. A directory of
// guest files shared with that group only, and not with a group such as
// kvm that people join, keeps them from the machine's other users.
func HypervisorGID(conf string) int {
	names := []string{"libvirt-qemu", "qemu"}
	if f, err := os.Open(conf); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := confGroupRe.FindStringSubmatch(sc.Text()); m != nil {
				names = []string{m[1]}
			}
		}
		f.Close()
	}
	for _, n := range names {
		if n != "" && n[0] == '+' { // "+NNN": a numeric id
			if id, err := strconv.Atoi(n[1:]); err == nil {
				return id
			}
			continue
		}
		if g, err := user.LookupGroup(n); err == nil {
			if id, err := strconv.Atoi(g.Gid); err == nil {
				return id
			}
		}
	}
	return -1
}
