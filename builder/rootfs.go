package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labforge/labforge/builder/family"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/aptsrc"
	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/runx"
)

// rootfsSpec is everything that shapes a bootstrapped root file system;
// its hash names the cached copy.
type rootfsSpec struct {
	Suite    string
	Mirror   string
	Packages []string
	Version  int // bump when the bootstrap recipe changes
	// Clean drops the package manager's downloads (the family's command);
	// not part of the key, as it leaves nothing behind.
	Clean []string
}

const rootfsVersion = 1

// newRootfsSpec is the bootstrap of base with its family's boot packages
// and the spec's packages (in the family's names). An empty aptRoot leaves
// the mirror to the caller.
func newRootfsSpec(base images.Base, fam family.Profile, extra []string, aptRoot string) rootfsSpec {
	pkgs := append(append([]string{}, fam.BootPackages...), fam.Packages(extra)...)
	sort.Strings(pkgs)
	pkgs = slices.Compact(pkgs)
	r := rootfsSpec{Suite: base.Suite, Packages: pkgs, Version: rootfsVersion, Clean: fam.Clean}
	if aptRoot != "" {
		r.Mirror = aptsrc.Mirror(aptRoot, base.Suite)
	}
	return r
}

// debootstrapArgs bootstraps r into dir.
func (r rootfsSpec) debootstrapArgs(dir string) []string {
	args := []string{"--variant=minbase", "--components=main", "--include=" + strings.Join(r.Packages, ","), r.Suite, dir}
	if r.Mirror != "" {
		args = append(args, r.Mirror)
	}
	return args
}

func (r rootfsSpec) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d\n%s\n%s\n%s\n", r.Version, r.Suite, r.Mirror, strings.Join(r.Packages, ","))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ensureRootfs returns the cached root file system for r, bootstrapping it
// first when it is missing. The cache entry appears atomically (rename), so
// an interrupted bootstrap never leaves a half-made tree in use.
func ensureRootfs(ctx context.Context, cacheDir string, r rootfsSpec, log io.Writer) (dir string, cached bool, err error) {
	dir = filepath.Join(cacheDir, "rootfs", r.key())
	if _, err := os.Stat(filepath.Join(dir, "etc", "os-release")); err == nil {
		touch(dir)
		return dir, true, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", false, err
	}
	// One bootstrap per key at a time; the holder clears a killed one's tree.
	unlock, err := fsx.Lock(dir+".lock", true)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "etc", "os-release")); err == nil {
		return dir, true, nil
	}
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".tmp-"+r.key()+"-*"))
	for _, d := range stale {
		removeTree(d)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+r.key()+"-")
	if err != nil {
		return "", false, err
	}
	defer removeTree(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", false, err
	}
	if err := runx.Run(ctx, log, nil, "debootstrap", r.debootstrapArgs(tmp)...); err != nil {
		return "", false, fmt.Errorf("bootstrap %s root fs (full log in the build directory): %w", r.Suite, err)
	}
	// Nothing downloaded needs to stay in every image.
	if err := runx.Run(ctx, log, nil, "chroot", append([]string{tmp}, r.Clean...)...); err != nil {
		return "", false, err
	}
	// Nor the mirror's credentials, which debootstrap wrote into the
	// tree's sources.list with the mirror's address.
	if bare := bareMirror(r.Mirror); bare != r.Mirror {
		list := filepath.Join(tmp, "etc", "apt", "sources.list")
		data, err := os.ReadFile(list)
		if err != nil {
			return "", false, err
		}
		if err := os.WriteFile(list, []byte(strings.ReplaceAll(string(data), r.Mirror, bare)), 0o644); err != nil {
			return "", false, err
		}
	}
	// The tree is renamed whole once its file system has it on disk, so a
	// tree under its key is complete even after a power cut; that is why
	// finding it (its os-release) is enough, with no digest of 300 MB read
	// on every build: only root writes the cache.
	if err := syncFS(tmp); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", false, fmt.Errorf("store root fs in cache: %w", err)
	}
	if err := fsx.Sync(filepath.Dir(dir)); err != nil {
		return "", false, err
	}
	return dir, false, nil
}

// removeTree deletes a root file system tree, first unmounting anything a
// killed debootstrap or chroot left mounted inside it.
func removeTree(dir string) {
	for _, m := range []string{"proc", "sys", "dev/pts", "dev"} {
		_ = unmount(filepath.Join(dir, m))
	}
	_ = os.RemoveAll(dir)
}

// touch marks a cache entry as used now, for `cache prune`.
func touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// bareMirror is the mirror's address without user and password: what may
// be written into an image or a build record.
func bareMirror(m string) string {
	u, err := url.Parse(m)
	if err != nil || u.User == nil {
		return m
	}
	u.User = nil
	return u.String()
}
