package builder

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/labforge/labforge/internal/fsx"
)

// lockBuild makes builds of one spec exclusive and clears what an earlier,
// killed build of it left.
func lockBuild(cacheDir, name string) (func(), error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsx.Lock(filepath.Join(cacheDir, ".build-"+name+".lock"), false)
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
