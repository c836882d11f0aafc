// Package builder turns an image spec into a bootable qcow2 disk: a cached
// root file system, customised and labelled, laid onto a GPT disk with an
// EFI system partition so that the disk boots with firmware alone.
package builder

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/labforge/labforge/builder/family"
	"github.com/labforge/labforge/builder/ociimage"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/runx"
)

// Options tune a build.
type Options struct {
	CacheDir string    // where root file systems and images are kept
	AptRoot  string    // the host's apt configuration, for the mirror
	Log      io.Writer // full output of every command (nil: discarded)
	LogPath  string    // or a file for it, opened (0600) once the build's lock is held
	Progress Progress  // step-by-step progress (nil: silent)
	Force    bool      // rebuild the image even when it is cached
	BaseFile string    // a cloud base image the user supplies (checked against the catalogue)
}

// Progress hears about each step as it starts and ends.
type Progress interface {
	Start(step string)
	Done(step string, d time.Duration, note string, err error)
}

// openLog opens a build's log, truncated, readable by root alone: a
// step's output may quote what it made (keys, tokens).
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return f, f.Chmod(0o600)
}

// Result is what a build made.
type Result struct {
	Image  string // the qcow2 disk
	Key    string // content key of the image
	Cached bool   // the image was already there
	Record Record // the base disk's
	// SHA256 names the image's bytes: the base disk's sha256, or for an
	// image of layers a digest of it and every layer's. A layer rebuilt
	// with other bytes under the same key changes it, so nothing made from
	// an image (a warm state) outlives the bytes it was made on.
	SHA256 string
}

// Record is the build's own account, kept beside the image as JSON.
type Record struct {
	Spec       string            `json:"spec"`
	SpecHash   string            `json:"specHash"`
	Base       string            `json:"base"`
	RootfsKey  string            `json:"rootfsKey"`
	Mirror     string            `json:"mirror,omitempty"`
	Kernel     string            `json:"kernel"`
	RootUUID   string            `json:"rootUUID"`
	DiskSize   int64             `json:"diskSize"`
	Created    time.Time         `json:"created"`
	StepTimes  map[string]string `json:"stepTimes"`
	ImageBytes int64             `json:"imageBytes"`
	SHA256     string            `json:"sha256"`
	Layers     []LayerRecord     `json:"layers,omitempty"`
	Artifacts  []ArtifactRecord  `json:"artifacts,omitempty"`
	// ContainerImages are the course images built into the disk, by digest.
	ContainerImages []ociimage.Built `json:"containerImages,omitempty"`
	// What the final image holds, read from its files after the build.
	*Description `json:",omitempty"`
}

// LayerRecord names one provisioning layer of an image.
type LayerRecord struct {
	Step string `json:"step"`
	Key  string `json:"key"`
}

// recipe is bumped whenever the way a spec becomes a disk changes, so that
// images made the old way are not reused.
const recipe = 8

// baseKey names the disk of spec before provisioning: its content, the
// bytes of the programs built for it, the files and modules labforge
// writes into every tree (so that editing one rebuilds), and the recipe.
func baseKey(spec *images.Spec, artifacts string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("recipe %d\n%s\n%s\n%s", recipe, embeddedDigest(), spec.BaseHash(), artifacts)))
	return fmt.Sprintf("%x", sum[:8])
}

// basePath is where the disk of spec before provisioning is kept.
func basePath(cacheDir string, spec *images.Spec, key string) string {
	return filepath.Join(cacheDir, "images", spec.Name+"-"+key+".qcow2")
}

// Build makes spec's image, or returns the cached one, with the record of
// what the image holds (file-tree digest, packages, kernel, policy).
func Build(ctx context.Context, spec *images.Spec, opts Options) (*Result, error) {
	res, err := build1(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	if rec, err := readImageRecord(res.Image); err == nil && res.Cached && rec.Description != nil {
		res.Record.Description = rec.Description
		return res, nil
	}
	b := &build{opts: opts, spec: spec, times: map[string]string{}}
	if err := b.step("describe", func() (string, error) {
		d, err := describe(ctx, res.Image, opts.CacheDir, manifestPath(res.Image))
		if err != nil {
			return "", err
		}
		res.Record.Description = d
		return fmt.Sprintf("tree %s, %d packages", d.TreeDigest[:16], len(d.Packages)), nil
	}); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(res.Record, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fsx.WriteAtomic(imageRecordPath(res.Image), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func build1(ctx context.Context, spec *images.Spec, opts Options) (*Result, error) {
	base, ok := images.LookupBase(spec.Base)
	if !ok {
		return nil, fmt.Errorf("unknown base %q", spec.Base)
	}
	fam, err := family.Lookup(base.Family)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", base.Name, err)
	}
	if fam.RootFS == family.CloudImage {
		path, err := ensureCloudBase(ctx, opts.CacheDir, base, opts.BaseFile, opts.Log)
		if err != nil {
			return nil, err
		}
		// The plan is made (and the spec checked against the family) even
		// though nothing can apply it yet.
		if _, err := makePlan(spec, base, fam, planParams{}); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("base %s (%s, verified): its %s plan is ready, but applying it needs the cloud image's root file system opened, which labforge cannot do yet; use debian-12", base.Name, path, fam.Name)
	}
	if opts.AptRoot == "" {
		opts.AptRoot = "/etc/apt"
	}
	release, err := UseCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	defer release()
	var waited time.Time
	const waitStep = "wait for the other build"
	unlock, err := lockBuild(ctx, opts.CacheDir, spec.Name, func(lock string) {
		if opts.Progress != nil {
			waited = time.Now()
			opts.Progress.Start(waitStep)
		}
	})
	if !waited.IsZero() {
		opts.Progress.Done(waitStep, time.Since(waited), "another labforge was building "+spec.Name, err)
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The log is opened only under the lock: a second build must not
	// truncate the log of the one it waited for.
	if opts.LogPath != "" {
		f, err := openLog(opts.LogPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		opts.Log = f
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	b := &build{opts: opts, spec: spec, fam: fam, times: map[string]string{}}
	var arts *artifactSet
	if len(spec.Artifacts) > 0 {
		// Building programs is CPU work, bootstrapping a root fs mostly
		// waiting on the network and dpkg: on a cold cache, do both at once.
		if !baseBuiltBefore(opts.CacheDir, spec) {
			b.prefetch = prefetchRootfs(ctx, opts.CacheDir, newRootfsSpec(base, fam, spec.Packages, opts.AptRoot), opts.Log)
			defer b.prefetch.stop()
		}
		if err := b.step("artifacts", func() (string, error) {
			var note string
			var err error
			arts, note, err = buildArtifacts(ctx, opts.CacheDir, spec, opts.Log)
			return note, err
		}); err != nil {
			return nil, err
		}
	}
	key := baseKey(spec, arts.digest())
	img := basePath(opts.CacheDir, spec, key)
	res := &Result{Image: img, Key: key}
	rec, err := readRecord(img)
	if err == nil && !opts.Force {
		res.Cached = true
		touch(img)
		// A cached disk is used only if its bytes are the ones recorded.
		if err := b.step("base disk", func() (string, error) {
			return "cached " + filepath.Base(img) + ", sha256 checked", checkFile(img, rec.SHA256)
		}); err != nil {
			return nil, err
		}
	} else {
		if rec, err = b.run(ctx, base, img, arts); err != nil {
			return nil, err
		}
	}
	res.Record, res.SHA256 = *rec, rec.SHA256
	if len(spec.Provision) == 0 && !spec.Course {
		return res, nil
	}
	var courseKey string
	if spec.Course {
		if b.courseProg, courseKey, err = courseContent(); err != nil {
			return nil, fmt.Errorf("%s: course: %w", spec.Path, err)
		}
	}
	plan := planLayers(opts.CacheDir, res.Key, spec, courseKey)
	final := plan[len(plan)-1]
	res.Image, res.Key = final.Path, final.Key
	first := 0
	if !opts.Force {
		first = firstMissing(plan)
	}
	for _, l := range plan[:first] {
		touch(l.Path)
		if err := b.step(l.Step, func() (string, error) { return "cached layer " + l.Key, checkLayer(l) }); err != nil {
			return nil, err
		}
	}
	if first < len(plan) {
		res.Cached = false
		if err := b.provision(ctx, img, key, plan, first); err != nil {
			return nil, err
		}
	}
	res.Record.Layers = make([]LayerRecord, len(plan))
	for i, l := range plan {
		res.Record.Layers[i] = LayerRecord{Step: l.Step, Key: l.Key}
	}
	if res.SHA256, err = imageSum(res.Record.SHA256, plan); err != nil {
		return nil, err
	}
	return res, nil
}

// baseBuiltBefore tells whether some base disk of this spec's name was made
// from the same spec content (only the programs built for it may differ):
// then its root fs is not worth bootstrapping ahead.
func baseBuiltBefore(cacheDir string, spec *images.Spec) bool {
	recs, _ := filepath.Glob(filepath.Join(cacheDir, "images", spec.Name+"-*.json"))
	for _, p := range recs {
		var r Record
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &r) == nil && r.SpecHash == spec.BaseHash() {
			return true
		}
	}
	return false
}

// prefetchRootfs bootstraps the root fs in the background. The build's own
// ensureRootfs later waits on the same lock and finds it done; stop cancels
// a bootstrap still running and waits for it, so none outlives the build.
func prefetchRootfs(ctx context.Context, cacheDir string, rs rootfsSpec, log io.Writer) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(p.done)
		t0 := time.Now()
		// An error here is met again, and reported, by the build's own call.
		_, hit, err := ensureRootfs(ctx, cacheDir, rs, log)
		p.built, p.took = err == nil && !hit, time.Since(t0)
	}()
	return p
}

// prefetch is a root fs bootstrap running beside the artifacts step.
type prefetch struct {
	done   chan struct{}
	cancel func()
	built  bool          // it ran debootstrap (read after done)
	took   time.Duration // how long that took
}

func (p *prefetch) stop() {
	p.cancel()
	<-p.done
}

type build struct {
	prefetch *prefetch // the root fs bootstrap started beside the artifacts, if any
	opts     Options
	spec     *images.Spec
	fam      family.Profile
	times    map[string]string
	// courseProg is the course's program a course layer installs.
	courseProg []byte
}

// step runs fn as one named, timed step of the build.
func (b *build) step(name string, fn func() (string, error)) error {
	if b.opts.Progress != nil {
		b.opts.Progress.Start(name)
	}
	t0 := time.Now()
	note, err := fn()
	d := time.Since(t0)
	b.times[name] = d.Round(10 * time.Millisecond).String()
	if b.opts.Progress != nil {
		b.opts.Progress.Done(name, d, note, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (b *build) run(ctx context.Context, base images.Base, img string, arts *artifactSet) (*Record, error) {
	cache := b.opts.CacheDir
	if err := os.MkdirAll(filepath.Join(cache, "images"), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(cache, workPrefix(b.spec.Name))
	if err != nil {
		return nil, err
	}
	// Whatever happens, no half-made tree or disk is left behind.
	// One defer, in this order: the tree's mounts (proc, sys, dev) must be
	// gone before anything is removed, or RemoveAll walks into the host's.
	defer func() {
		removeTree(filepath.Join(work, "rootfs"))
		os.RemoveAll(work)
	}()

	rs := newRootfsSpec(base, b.fam, b.spec.Packages, b.opts.AptRoot)
	var cached string
	err = b.step("root fs", func() (string, error) {
		dir, hit, err := ensureRootfs(ctx, cache, rs, b.opts.Log)
		cached = dir
		if hit && b.prefetch != nil {
			// The bootstrap beside the artifacts made it: say so, not "cached".
			if <-b.prefetch.done; b.prefetch.built {
				return fmt.Sprintf("debootstrap %s %s, %s beside the artifacts", rs.Suite, rs.key(), b.prefetch.took.Round(time.Second)), err
			}
		}
		if hit {
			return "cached " + rs.key(), err
		}
		return "debootstrap " + rs.Suite + " " + rs.key(), err
	})
	if err != nil {
		return nil, err
	}
	root := filepath.Join(work, "rootfs")
	if err := b.step("copy", func() (string, error) { return "", copyTree(ctx, cached, root, b.opts.Log) }); err != nil {
		return nil, err
	}
	var built []ociimage.Built
	if arts != nil {
		if err := b.step("install artifacts", func() (string, error) {
			if err := arts.install(root); err != nil {
				return "", err
			}
			var err error
			built, err = buildContainerImages(ctx, root, b.spec, arts)
			if len(built) == 0 {
				return "", err
			}
			return imagesNote(built), err
		}); err != nil {
			return nil, err
		}
	}
	ids := idsFor(b.spec.BaseHash())
	params := bootParams{Title: "labforge " + b.spec.Name, RootUUID: ids.RootUUID, SELinux: b.spec.SELinux, KernelArgs: kernelArgs(b.spec)}
	p, err := makePlan(b.spec, base, b.fam, planParams{Boot: params, Mirror: rs.Mirror})
	if err != nil {
		return nil, err
	}
	if err := b.step("customize", func() (string, error) {
		return "selinux " + b.spec.SELinux, customize(ctx, root, b.spec, p, b.opts.Log)
	}); err != nil {
		return nil, err
	}
	kernel, initrd, err := findKernel(root)
	if err != nil {
		return nil, err
	}
	esp, err := espFiles(root, kernel, initrd, params)
	if err != nil {
		return nil, err
	}
	raw := filepath.Join(work, "disk.raw")
	if err := b.step("disk", func() (string, error) {
		return fmt.Sprintf("GPT, ESP + ext4, %s", images.Size(b.spec.Disk.Size)),
			makeRawDisk(ctx, raw, int64(b.spec.Disk.Size), ids, root, esp, b.opts.Log)
	}); err != nil {
		return nil, err
	}
	tmp := filepath.Join(work, "disk.qcow2")
	if err := b.step("qcow2", func() (string, error) {
		return "", runx.Run(ctx, b.opts.Log, nil, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp)
	}); err != nil {
		return nil, err
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return nil, err
	}
	sum, err := fsx.SHA256(tmp)
	if err != nil {
		return nil, err
	}
	rec := &Record{
		Spec: b.spec.Name, SpecHash: b.spec.BaseHash(), Base: base.Name, RootfsKey: rs.key(), Mirror: bareMirror(rs.Mirror),
		Kernel: filepath.Base(kernel), RootUUID: ids.RootUUID, DiskSize: int64(b.spec.Disk.Size),
		Created: time.Now().UTC(), StepTimes: b.times, ImageBytes: st.Size(), SHA256: sum,
		Artifacts: arts.records(), ContainerImages: built,
	}
	// The record is written last: an image without one is not finished.
	// The image reaches the disk before its name does, so a power cut
	// cannot leave a record beside an image of zeros.
	if err := fsx.Sync(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, img); err != nil {
		return nil, fmt.Errorf("store image: %w", err)
	}
	if err := writeRecord(img, rec); err != nil {
		os.Remove(img)
		return nil, err
	}
	return rec, nil
}

func recordPath(img string) string { return img[:len(img)-len(filepath.Ext(img))] + ".json" }

func readRecord(img string) (*Record, error) {
	if _, err := os.Stat(img); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(recordPath(img))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", recordPath(img), err)
	}
	return &r, nil
}

func writeRecord(img string, r *Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteAtomic(recordPath(img), append(data, '\n'), 0o644)
}

// idsFor derives the disk's identifiers from the spec hash.
func idsFor(hash string) diskIDs {
	uuid := func(salt string) string {
		s := sha256.Sum256([]byte(hash + salt))
		s[6] = s[6]&0x0f | 0x40 // version 4 layout
		s[8] = s[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
	}
	return diskIDs{DiskGUID: uuid("disk"), ESPGUID: uuid("esp"), RootGUID: uuid("root-part"), RootUUID: uuid("root-fs")}
}

// findKernel picks the newest kernel and its initrd in the tree's /boot.
func findKernel(root string) (kernel, initrd string, err error) {
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(ks) == 0 {
		return "", "", fmt.Errorf("no kernel in %s/boot", root)
	}
	sort.Strings(ks)
	kernel = ks[len(ks)-1]
	initrd = filepath.Join(root, "boot", "initrd.img-"+filepath.Base(kernel)[len("vmlinuz-"):])
	if _, err := os.Stat(initrd); err != nil {
		return "", "", fmt.Errorf("kernel %s has no initrd: %w", filepath.Base(kernel), err)
	}
	return kernel, initrd, nil
}

// espFiles is systemd-boot, its configuration, the kernel and the initrd.
func espFiles(root, kernel, initrd string, p bootParams) ([]espFile, error) {
	loader, err := render("loader.conf", p)
	if err != nil {
		return nil, err
	}
	entry, err := render("entry.conf", p)
	if err != nil {
		return nil, err
	}
	boot := filepath.Join(root, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	if _, err := os.Stat(boot); err != nil {
		return nil, fmt.Errorf("systemd-boot missing from the root fs (package systemd-boot-efi): %w", err)
	}
	return []espFile{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Src: boot},
		{Path: "/loader/loader.conf", Data: loader},
		{Path: "/loader/entries/labforge.conf", Data: entry},
		{Path: "/vmlinuz", Src: kernel},
		{Path: "/initrd.img", Src: initrd},
	}, nil
}

// Fields are the build's result for tools reading --progress-json.
func (r *Result) Fields() map[string]any {
	return map[string]any{"image": r.Image, "key": r.Key, "cached": r.Cached, "bytes": r.Record.ImageBytes, "layers": len(r.Record.Layers)}
}

// String is the build's result for a person: the image and its size.
func (r *Result) String() string {
	if n := len(r.Record.Layers); n > 0 {
		return fmt.Sprintf("image %s (%d layers on a %s base disk)", r.Image, n, progress.Bytes(r.Record.ImageBytes))
	}
	return fmt.Sprintf("image %s (%s)", r.Image, progress.Bytes(r.Record.ImageBytes))
}
