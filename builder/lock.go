package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// flock takes an exclusive lock on path, waiting for it when wait is true.
// The lock dies with the process, so a build killed with -9 never leaves
// one behind; what it leaves on disk is cleaned by the next holder.
func flock(path string, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// lockBuild makes builds of one spec exclusive and clears what an earlier,
// killed build of it left.
func lockBuild(cacheDir, name string) (func(), error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := flock(filepath.Join(cacheDir, ".build-"+name+".lock"), false)
	if err != nil {
		return nil, fmt.Errorf("another labforge is building %s (lock %s)", name, filepath.Join(cacheDir, ".build-"+name+".lock"))
	}
	stale, _ := filepath.Glob(filepath.Join(cacheDir, ".work-"+name+"-*"))
	for _, d := range stale {
		removeTree(filepath.Join(d, "rootfs"))
		os.RemoveAll(d)
	}
	return unlock, nil
}
