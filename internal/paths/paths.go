// Package paths says where labforge keeps its cache and its instances.
//
// As root they live under /var, not /root: the system libvirtd runs QEMU as
// an unprivileged user that must be able to reach the disk images.
package paths

import (
	"os"
	"path/filepath"
)

// Cache holds downloads and builds that can be made again: root file
// systems, Kubernetes binaries, images. LABFORGE_CACHE overrides it.
func Cache() string {
	if d := os.Getenv("LABFORGE_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/labforge"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "labforge")
	}
	return filepath.Join(os.TempDir(), "labforge-cache")
}

// State holds running instances: overlays, seeds, keys and console logs.
// LABFORGE_STATE overrides it.
func State() string {
	if d := os.Getenv("LABFORGE_STATE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/labforge"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "labforge")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "labforge")
	}
	return filepath.Join(os.TempDir(), "labforge-state")
}

// Instances is the directory of all instances.
func Instances() string { return filepath.Join(State(), "instances") }

// GuestAgent is where labforge's guest agent (cmd/labforge-guest) is:
// LABFORGE_GUEST_AGENT, else labforge-guest beside this program (as
// scripts/install builds it into bin/). "" when there is none; verify then
// runs its checks as scripts. LABFORGE_GUEST_AGENT=none turns it off.
func GuestAgent() string { return guestProgram("LABFORGE_GUEST_AGENT", "labforge-guest") }

// CourseProgram is where the course's program for lab hosts
// (cmd/labforge-labs) is: LABFORGE_COURSE_PROGRAM, else labforge-labs
// beside this program; "" when there is none.
func CourseProgram() string { return guestProgram("LABFORGE_COURSE_PROGRAM", "labforge-labs") }

func guestProgram(env, name string) string {
	if p := os.Getenv(env); p != "" {
		if p == "none" {
			return ""
		}
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
