// Package family is the one place that says how the distribution families
// labforge builds from differ: how the root fs is obtained, the package
// manager, package names, the SELinux policy and its store, unit paths and
// service names. The builder's customisation plan takes every
// family-specific value from a Profile and branches on nothing else, so
// the plans of two families differ only where their profiles do (the
// golden tests in builder check exactly that).
package family

import (
	"fmt"
	"sort"
	"strings"
)

// RootFS says how a family's root file system comes to be.
type RootFS string

const (
	// Debootstrap trees are bootstrapped from packages; labforge then makes
	// the disk (GPT, ESP with systemd-boot, ext4) itself.
	Debootstrap RootFS = "debootstrap"
	// CloudImage trees are the root of a published GenericCloud disk, which
	// keeps its own partitions, fstab and boot loader.
	CloudImage RootFS = "cloud-image"
)

// Profile is what a family does its own way. Package names in specs are
// Debian's (the first family); PackageNames translates them.
type Profile struct {
	Name   string
	RootFS RootFS
	// BootPackages are what every image of the family needs to boot,
	// take its cloud-init seed, be reached over SSH and run SELinux.
	BootPackages []string
	// Install installs packages into the tree (the names are appended);
	// empty when the root fs step already installed them.
	Install []string
	// Clean drops the package manager's downloads from the tree.
	Clean []string
	// PackageNames maps a spec's (Debian) package name to the family's;
	// "" means the family needs no package for it. Absent names are kept.
	PackageNames map[string]string
	// BuildTraces are globs (in the tree) of package-manager state that
	// must not ship: the disk has to pass the seal suite.
	BuildTraces []string
	// SELinuxType is the policy's name: SELINUXTYPE and /etc/selinux/TYPE.
	SELinuxType string
	// RefpolicySource is the reference policy's source archive in the tree
	// (from the package selinux-policy-src maps to), or "" when the family
	// has none: modules by name must then be in ProvidedModules.
	RefpolicySource string
	// LocalModules are labforge's own policy modules (builder/selinux/NAME.te)
	// that the family's policy needs for a lab host to boot without denials.
	LocalModules []string
	// ProvidedModules are policy modules the family's policy (with its
	// mapped packages) already carries, so a spec naming one builds nothing.
	ProvidedModules []string
	// NetworkConfig is the systemd-networkd file labforge writes (DHCP on
	// every wired NIC), or "" when the family's network manager already
	// takes DHCP on its own.
	NetworkConfig string
	// NetworkServices are enabled in the tree.
	NetworkServices []string
	// UnitDir is where the distribution's systemd units live.
	UnitDir string
	// SSHService is the OpenSSH server's unit name, without .service.
	SSHService string
	// KernelArgs sets the kernel command line in the tree's own boot
	// loader (the arguments are appended as one word); empty when labforge
	// writes the boot entry itself.
	KernelArgs []string
}

// Debian is Debian 12: a tree bootstrapped from packages onto a disk
// labforge makes, booted by systemd-boot from labforge's own ESP.
var Debian = Profile{
	Name:   "debian",
	RootFS: Debootstrap,
	BootPackages: []string{
		"systemd-sysv", "udev", "dbus", "linux-image-cloud-amd64", "systemd-boot-efi",
		"systemd-resolved", "openssh-server", "cloud-init", "sudo", "iproute2",
		"selinux-policy-default", "policycoreutils", "auditd", "ca-certificates",
		"procps", "less", "kmod",
		// cloud-init labels what it writes when python3-selinux is there;
		// checkpolicy and semodule-utils compile labforge's local modules.
		"python3-selinux", "checkpolicy", "semodule-utils",
		// python3-cryptography (cloud-init) needs a virtual package that
		// debootstrap's resolver does not follow; name its provider.
		"python3-cffi-backend",
	},
	Clean:           []string{"apt-get", "clean"},
	BuildTraces:     []string{"var/cache/apt/*.bin", "var/lib/apt/lists/*_Packages", "var/lib/apt/lists/*Release*"},
	SELinuxType:     "default",
	RefpolicySource: "/usr/src/selinux-policy-src.tar.zst",
	LocalModules:    []string{"labforge_cloudinit", "labforge_getty", "labforge_networkd"},
	NetworkConfig:   "etc/systemd/network/20-wired.network",
	NetworkServices: []string{"systemd-networkd", "systemd-resolved"},
	UnitDir:         "/lib/systemd/system",
	SSHService:      "ssh",
}

// EL9 is Rocky, Alma and CentOS Stream 9: the GenericCloud image's root,
// which already boots (grub, its own fstab) and runs NetworkManager.
var EL9 = Profile{
	Name:   "el9",
	RootFS: CloudImage,
	// The GenericCloud images carry the kernel, boot loader and
	// cloud-init; naming them anyway makes a missing one an error.
	BootPackages: []string{
		"cloud-init", "openssh-server", "sudo", "iproute", "selinux-policy-targeted",
		"policycoreutils", "audit", "ca-certificates", "procps-ng", "less", "kmod",
		"python3-libselinux", "checkpolicy", "container-selinux",
	},
	Install: []string{"dnf", "-y", "--setopt=install_weak_deps=False", "install"},
	Clean:   []string{"dnf", "clean", "all"},
	PackageNames: map[string]string{
		"iputils-ping": "iputils",
		"vim-tiny":     "vim-minimal",
		"conntrack":    "conntrack-tools",
		"iptables":     "iptables-nft",
		// Open vSwitch comes from the distribution's NFV SIG repositories.
		"openvswitch-switch": "openvswitch3.3",
		// The container types Debian builds from the reference policy's
		// source ship compiled in container-selinux.
		"selinux-policy-src": "container-selinux",
		"selinux-policy-dev": "selinux-policy-devel",
	},
	BuildTraces: []string{"var/cache/dnf/*"},
	SELinuxType: "targeted",
	// The targeted policy has a cloud-init domain and knows agetty's
	// capabilities, and networkd does not run: Debian's fixes do not apply.
	LocalModules:    nil,
	ProvidedModules: []string{"container", "podman", "docker"},
	NetworkServices: []string{"NetworkManager"},
	UnitDir:         "/usr/lib/systemd/system",
	SSHService:      "sshd",
	KernelArgs:      []string{"grubby", "--update-kernel=ALL"},
}

var profiles = map[string]Profile{Debian.Name: Debian, EL9.Name: EL9}

// Lookup finds the profile of a family named in the catalogue.
func Lookup(name string) (Profile, error) {
	p, ok := profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("unknown family %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return p, nil
}

// Names lists the families, sorted.
func Names() []string {
	var out []string
	for n := range profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Packages is the family's names for a spec's packages, in order, without
// the ones the family does not need.
func (p Profile) Packages(spec []string) []string {
	out := make([]string, 0, len(spec))
	for _, n := range spec {
		if m, ok := p.PackageNames[n]; ok {
			if m == "" {
				continue
			}
			n = m
		}
		out = append(out, n)
	}
	return out
}

// Provides tells whether the family's policy already has module m.
func (p Profile) Provides(m string) bool {
	for _, x := range p.ProvidedModules {
		if x == m {
			return true
		}
	}
	return false
}
