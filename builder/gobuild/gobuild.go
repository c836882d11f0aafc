// Package gobuild builds the Go programs an image carries (Kubernetes, etcd,
// CoreDNS and labforge's own guest helpers) on the build host, from the Go
// module proxy the host is configured with, once per version. Static,
// trimmed builds without build IDs give the same bytes on every run, so
// every image of a class carries identical binaries.
package gobuild

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/runx"
)

// Request names one artifact: a known recipe at a version, or a local main
// package (Dir) built inside its own module.
type Request struct {
	Name    string
	Recipe  string
	Version string
	Dir     string
}

// Binary is one built program.
type Binary struct {
	Name   string `json:"name"`
	Path   string `json:"-"`
	SHA256 string `json:"sha256"`
}

// Result is what one request built (or found cached).
type Result struct {
	Name     string
	Version  string
	Binaries []Binary
	Cached   bool
}

// revision is bumped when recipes change, so that old builds are not reused.
const revision = 1

// GOARCH of the guests: labforge's bases are all x86_64.
const goarch = "amd64"

// Build makes r's binaries under cacheDir/bin, reusing a finished earlier
// build of the same recipe and version.
func Build(ctx context.Context, cacheDir string, r Request, log io.Writer) (*Result, error) {
	if log == nil {
		log = io.Discard
	}
	if r.Recipe == "" {
		return buildLocal(ctx, cacheDir, r, log)
	}
	rc, ok := recipes[r.Recipe]
	if !ok {
		return nil, fmt.Errorf("unknown recipe %q (known: %s)", r.Recipe, strings.Join(Recipes(), ", "))
	}
	if err := rc.check(r.Version); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	dir := filepath.Join(cacheDir, "bin", fmt.Sprintf("%s-%s-r%d", r.Recipe, r.Version, revision))
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if bins, err := readManifest(dir); err == nil {
		return &Result{Name: r.Name, Version: r.Version, Binaries: bins, Cached: true}, nil
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+r.Recipe+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	src, out := filepath.Join(work, "src"), filepath.Join(work, "out")
	for _, d := range []string{src, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := rc.prepare(ctx, src, r.Version, log); err != nil {
		return nil, fmt.Errorf("%s %s: prepare: %w", r.Recipe, r.Version, err)
	}
	// One go build for all targets: they share most packages, and the
	// links run in parallel. Each binary is named after its package.
	args := []string{"build", "-o", out + "/", "-ldflags", "-s -w -buildid= " + rc.ldflags(r.Version)}
	if len(rc.tags) > 0 {
		args = append(args, "-tags", strings.Join(rc.tags, ","))
	}
	for _, t := range rc.targets {
		args = append(args, t.pkg)
	}
	if err := runGo(ctx, src, log, args...); err != nil {
		return nil, fmt.Errorf("%s %s: build: %w", r.Recipe, r.Version, err)
	}
	for _, t := range rc.targets {
		if _, err := os.Stat(filepath.Join(out, t.name)); err != nil {
			return nil, fmt.Errorf("%s %s: go build made no %s", r.Recipe, r.Version, t.name)
		}
	}
	bins, err := publish(out, dir)
	if err != nil {
		return nil, err
	}
	return &Result{Name: r.Name, Version: r.Version, Binaries: bins}, nil
}

// buildLocal builds a main package of a module on disk (labforge's guest
// helpers). Go's own build cache makes an unchanged rebuild take a second.
func buildLocal(ctx context.Context, cacheDir string, r Request, log io.Writer) (*Result, error) {
	if st, err := os.Stat(r.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: %s is not a directory", r.Name, r.Dir)
	}
	dir := filepath.Join(cacheDir, "bin", "local", r.Name)
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+r.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	args := []string{"build", "-o", filepath.Join(out, r.Name), "-ldflags", "-s -w -buildid=", "."}
	if err := runGo(ctx, r.Dir, log, args...); err != nil {
		return nil, fmt.Errorf("%s: build %s: %w", r.Name, r.Dir, err)
	}
	bins, err := publish(out, dir)
	if err != nil {
		return nil, err
	}
	return &Result{Name: r.Name, Version: "local", Binaries: bins}, nil
}

// GoTool finds the go command: on PATH, or where the official archive
// installs it (scripts/install's PATH does not reach a later shell).
func GoTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", fmt.Errorf("building this image's programs needs Go (1.24 or newer): none on PATH or in /usr/local/go; run scripts/install")
}

func runGo(ctx context.Context, dir string, log io.Writer, args ...string) error {
	gotool, err := GoTool()
	if err != nil {
		return err
	}
	return runx.RunIn(ctx, dir, log, buildEnv(), gotool, args...)
}

// buildEnv makes static, reproducible Linux binaries. The module proxy and
// the Go caches are the host's own (GOPROXY, GOMODCACHE, GOCACHE). No VCS
// stamp: a local program built from a clean clone and from a work tree
// with edits elsewhere must have the same bytes, or every commit would
// miss the image cache.
func buildEnv() []string {
	return []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch, "GOFLAGS=-mod=mod -trimpath -buildvcs=false", "GOWORK=off"}
}

const manifestName = "manifest.json"

// publish writes out's manifest and moves it to dir, replacing what was there.
func publish(out, dir string) ([]Binary, error) {
	bins, err := writeManifest(out)
	if err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(out, dir); err != nil {
		return nil, err
	}
	for i := range bins {
		bins[i].Path = filepath.Join(dir, bins[i].Name)
	}
	return bins, nil
}

func writeManifest(dir string) ([]Binary, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bins []Binary
	for _, e := range entries {
		if e.Name() == manifestName {
			continue
		}
		sum, err := fsx.SHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		bins = append(bins, Binary{Name: e.Name(), Path: filepath.Join(dir, e.Name()), SHA256: sum})
	}
	sort.Slice(bins, func(i, j int) bool { return bins[i].Name < bins[j].Name })
	data, _ := json.MarshalIndent(bins, "", "  ")
	// The manifest is written last: a directory without one is unfinished.
	return bins, os.WriteFile(filepath.Join(dir, manifestName), append(data, '\n'), 0o644)
}

// readManifest returns a finished build's binaries, checking each one's
// bytes against the manifest so a damaged cache is rebuilt, not shipped.
func readManifest(dir string) ([]Binary, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var bins []Binary
	if err := json.Unmarshal(data, &bins); err != nil {
		return nil, err
	}
	for i := range bins {
		bins[i].Path = filepath.Join(dir, bins[i].Name)
		sum, err := fsx.SHA256(bins[i].Path)
		if err != nil || sum != bins[i].SHA256 {
			return nil, fmt.Errorf("%s: checksum mismatch", bins[i].Path)
		}
	}
	return bins, nil
}

// lockDir serialises builds into dir across processes (dir.lock beside it).
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsx.Lock(dir+".lock", true)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return unlock, nil
}
