package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
)

// lockBuild makes builds of one spec exclusive and clears what an earlier,
// killed build of it left. A build already running is waited for (its
// image is then most likely cached for this one), calling waiting once,
// until ctx ends.
func lockBuild(ctx context.Context, cacheDir, name string, waiting func(lock string)) (func(), error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	path := buildLock(cacheDir, name)
	unlock, err := fsx.LockContext(ctx, path, func() {
		if waiting != nil {
			waiting(path)
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("another labforge is building %s (lock %s): %w", name, path, err)
		}
		return nil, fmt.Errorf("build lock %s: %w", path, err) // not a build that holds it
	}
	// Names may hold dashes but never dots: ".work-lab.*" cannot
	// match the live work directory of spec lab-x.
	stale, _ := filepath.Glob(filepath.Join(cacheDir, workPrefix(name)+"*"))
	for _, d := range stale {
		removeTree(filepath.Join(d, "rootfs"))
		os.RemoveAll(d)
	}
	return unlock, nil
}

// BuildGuestPrefix starts the instance name of every build guest.
const BuildGuestPrefix = instance.BuildGuestPrefix

// Building says whether a labforge is building the spec called name now.
func Building(cacheDir, name string) bool {
	unlock, err := fsx.Lock(buildLock(cacheDir, name), false)
	if err != nil {
		return errors.Is(err, fsx.ErrLocked)
	}
	unlock()
	return false
}

// buildLock is the lock file a build of the spec called name holds.
func buildLock(cacheDir, name string) string { return filepath.Join(cacheDir, ".build-"+name+".lock") }

// workPrefix starts the name of a build's private work directory.
func workPrefix(name string) string { return ".work-" + name + "." }

// cacheLock is held shared by everything that writes temporary files into
// the cache (builds, exports, uploads, image checks), and exclusively by
// `cache prune`, which may then take any such file for a leftover.
func cacheLock(cacheDir string) string { return filepath.Join(cacheDir, ".cache.lock") }

// UseCache holds the cache open for writing until the returned func is
// called; it waits while a prune runs.
func UseCache(cacheDir string) (func(), error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	// Layers below the seal hold what the build guest had (its host keys,
	// whatever a step wrote): root's and the hypervisor's only.
	if err := instance.PrivateDir(filepath.Join(cacheDir, "layers")); err != nil {
		return nil, err
	}
	return fsx.LockShared(cacheLock(cacheDir), true)
}
