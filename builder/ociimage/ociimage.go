// Package ociimage builds the course's container images on the build host
// with go-containerregistry, from files labforge already has (the root fs's
// busybox, programs it built, directories beside the spec), so no image
// comes from an outside registry. Layers are normalised tars (fixed owner
// and time, sorted names): the same inputs give the same digests.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/labforge/labforge/images"
)

// Built is one image written as an OCI layout.
type Built struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Layers int    `json:"layers"`
	Dir    string `json:"-"`
}

// Inputs are where layer contents come from.
type Inputs struct {
	Root     string            // the image's root fs (for busybox)
	Binaries map[string]string // program name -> path on the build host
	Spec     *images.Spec
}

// Build writes every image of the spec as an OCI layout under outDir/<slug>
// and returns their digests in the spec's order.
func Build(ctx context.Context, in Inputs, outDir string) ([]Built, error) {
	made := map[string]v1.Image{}
	var out []Built
	for _, ci := range in.Spec.ContainerImages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		img, err := buildOne(in, ci, made)
		if err != nil {
			return nil, fmt.Errorf("container image %s: %w", ci.Name, err)
		}
		made[ci.Name] = img
		dir := filepath.Join(outDir, Slug(ci.Name))
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return nil, err
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": Tag(ci.Name)})); err != nil {
			return nil, fmt.Errorf("container image %s: write layout: %w", ci.Name, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		ls, _ := img.Layers()
		out = append(out, Built{Name: ci.Name, Digest: d.String(), Layers: len(ls), Dir: dir})
	}
	return out, nil
}

// Slug turns "course/web:1.0" into a directory name, "course_web_1.0".
func Slug(name string) string { return strings.NewReplacer("/", "_", ":", "_").Replace(name) }

// Tag is the part after the colon.
func Tag(name string) string { return name[strings.LastIndex(name, ":")+1:] }

func buildOne(in Inputs, ci images.ContainerImage, made map[string]v1.Image) (v1.Image, error) {
	var base v1.Image = empty.Image
	if ci.From != "" {
		base = made[ci.From]
	}
	base = mutate.MediaType(base, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	for i, l := range ci.Layers {
		entries, what, err := layerEntries(in, l)
		if err != nil {
			return nil, fmt.Errorf("layers[%d]: %w", i, err)
		}
		data, err := tarOf(entries)
		if err != nil {
			return nil, fmt.Errorf("layers[%d]: %w", i, err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		created := l.Comment
		if created == "" {
			created = "labforge: " + what
		}
		base, err = mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: created, Created: v1.Time{Time: epoch}}})
		if err != nil {
			return nil, err
		}
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	if ci.Entrypoint != nil {
		cf.Config.Entrypoint = ci.Entrypoint
	}
	if ci.Cmd != nil {
		cf.Config.Cmd = ci.Cmd
	}
	if len(ci.Env) > 0 {
		cf.Config.Env = append(cf.Config.Env, ci.Env...)
	} else if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	}
	if ci.User != "" {
		cf.Config.User = ci.User
	}
	if len(ci.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range ci.Ports {
			cf.Config.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
		}
	}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": ci.Name, "org.opencontainers.image.vendor": "labforge"}
	return mutate.ConfigFile(base, cf)
}

// epoch is the one time stamp every image carries, so digests repeat.
var epoch = time.Unix(0, 0).UTC()

// entry is one file of a layer.
type entry struct {
	name   string // path in the image, without leading slash
	mode   int64
	kind   byte // tar.TypeReg, TypeDir, TypeSymlink
	target string
	src    string // host file for regular files
}

func layerEntries(in Inputs, l images.ImageLayer) ([]entry, string, error) {
	switch {
	case l.Busybox:
		return busyboxEntries(in.Root)
	case l.Binary != "":
		src, ok := in.Binaries[l.Binary]
		if !ok {
			return nil, "", fmt.Errorf("binary %q was not built", l.Binary)
		}
		to := l.To
		if to == "" {
			to = "/usr/local/bin/" + l.Binary
		}
		return withParents([]entry{{name: strings.TrimPrefix(to, "/"), mode: 0o755, kind: tar.TypeReg, src: src}}), "add " + l.Binary + " " + to, nil
	default:
		dir := in.Spec.ImageFiles(l)
		to := strings.TrimPrefix(l.To, "/")
		var out []entry
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dir {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			e := entry{name: path.Join(to, filepath.ToSlash(rel)), mode: int64(info.Mode().Perm())}
			switch {
			case d.IsDir():
				e.kind = tar.TypeDir
			case info.Mode()&fs.ModeSymlink != 0:
				e.kind = tar.TypeSymlink
				e.target, _ = os.Readlink(p)
			case info.Mode().IsRegular():
				e.kind, e.src = tar.TypeReg, p
			default:
				return fmt.Errorf("%s: only files, directories and links go into images", p)
			}
			out = append(out, e)
			return nil
		})
		return withParents(out), "copy " + l.Files + " " + path.Join("/", to), err
	}
}

// busyboxEntries is a minimal base: the static busybox, a link for each of
// its applets, and the files a shell expects.
func busyboxEntries(root string) ([]entry, string, error) {
	bb := filepath.Join(root, "bin", "busybox")
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s --list-full (is busybox-static in packages?): %w", bb, err)
	}
	es := []entry{{name: "bin/busybox", mode: 0o755, kind: tar.TypeReg, src: bb}}
	for _, a := range strings.Fields(string(out)) {
		if a == "bin/busybox" {
			continue
		}
		es = append(es, entry{name: a, mode: 0o777, kind: tar.TypeSymlink, target: "/bin/busybox"})
	}
	for _, d := range []string{"tmp", "root", "proc", "sys", "dev", "etc", "var/www"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		es = append(es, entry{name: d, mode: mode, kind: tar.TypeDir})
	}
	return withParents(es), "busybox and its applets", nil
}

// withParents adds the missing parent directories, since a tar without
// them unpacks differently in different runtimes.
func withParents(es []entry) []entry {
	have := map[string]bool{}
	for _, e := range es {
		have[e.name] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "." && d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			es = append(es, entry{name: d, mode: 0o755, kind: tar.TypeDir})
		}
	}
	return es
}

func tarOf(es []entry) ([]byte, error) {
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.kind, Linkname: e.target, ModTime: epoch, Format: tar.FormatPAX}
		if e.kind == tar.TypeDir {
			h.Name += "/"
		}
		var data []byte
		if e.kind == tar.TypeReg {
			var err error
			if data, err = os.ReadFile(e.src); err != nil {
				return nil, err
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
