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
