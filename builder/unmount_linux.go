package builder

import "golang.org/x/sys/unix"

func unmount(path string) error { return unix.Unmount(path, unix.MNT_DETACH) }

func mountProc(dir string) error {
	return unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}
