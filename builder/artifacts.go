package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/labforge/labforge/builder/gobuild"
	"github.com/labforge/labforge/builder/ociimage"
	"github.com/labforge/labforge/images"
)

// artifactSet is every program the spec's artifacts made.
type artifactSet struct {
	results []artifactResult
}

type artifactResult struct {
	images.Artifact
	*gobuild.Result
}

// ArtifactRecord is what the build record says of one artifact.
type ArtifactRecord struct {
	Name     string           `json:"name"`
	Version  string           `json:"version"`
	Binaries []gobuild.Binary `json:"binaries"`
}

// buildArtifacts builds (or finds cached) every artifact of the spec.
func buildArtifacts(ctx context.Context, cacheDir string, spec *images.Spec, log io.Writer) (*artifactSet, string, error) {
	set := &artifactSet{}
	built, cached := 0, 0
	for _, a := range spec.Artifacts {
		req := gobuild.Request{Name: a.Name, Recipe: a.Recipe, Version: a.Version}
		if a.Go != "" {
			req.Dir = spec.ArtifactDir(a)
		}
		res, err := gobuild.Build(ctx, cacheDir, req, log)
		if err != nil {
			return nil, "", fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if res.Cached {
			cached++
		} else {
			built++
		}
		set.results = append(set.results, artifactResult{a, res})
	}
	return set, fmt.Sprintf("%d artifacts (%d built, %d cached)", len(set.results), built, cached), nil
}

// digest sums every binary's name, destination and bytes: with the spec's
// own hash it keys the base disk, so a changed program means a new disk.
func (s *artifactSet) digest() string {
	if s == nil || len(s.results) == 0 {
		return ""
	}
	h := sha256.New()
	for _, r := range s.results {
		for _, b := range r.Binaries {
			fmt.Fprintf(h, "%s %s %s\n", r.dest(), b.Name, b.SHA256)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r artifactResult) dest() string {
	if r.Dest != "" {
		return r.Dest
	}
	return "/usr/local/bin"
}

// binaries maps each program name to its file on the build host.
func (s *artifactSet) binaries() map[string]string {
	m := map[string]string{}
	for _, r := range s.results {
		for _, b := range r.Binaries {
			m[b.Name] = b.Path
		}
	}
	return m
}

func (s *artifactSet) records() []ArtifactRecord {
	if s == nil {
		return nil
	}
	var out []ArtifactRecord
	for _, r := range s.results {
		out = append(out, ArtifactRecord{Name: r.Artifact.Name, Version: r.Result.Version, Binaries: r.Binaries})
	}
	return out
}

// install copies every program into the tree. It goes through an
// os.Root, so neither a ".." that slipped past the spec's check nor a
// link inside the tree (the tree is the distribution's, and a step's)
// can take a write outside it onto the build host.
func (s *artifactSet) install(root string) error {
	tree, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer tree.Close()
	for _, r := range s.results {
		dir := strings.TrimPrefix(filepath.Clean("/"+r.dest()), "/")
		if dir == "" {
			dir = "."
		}
		if err := tree.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("install %s into %s: %w", r.Artifact.Name, r.dest(), err)
		}
		for _, b := range r.Binaries {
			if err := copyInto(tree, b.Path, filepath.Join(dir, b.Name), 0o755); err != nil {
				return fmt.Errorf("install %s into %s: %w", b.Name, r.dest(), err)
			}
		}
	}
	return nil
}

// copyInto copies the host file src to name inside tree, by way of a
// temporary name there, so a reader never sees half a program.
func copyInto(tree *os.Root, src, name string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := name + ".labforge-tmp"
	out, err := tree.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		tree.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		tree.Remove(tmp)
		return err
	}
	if err := tree.Chmod(tmp, mode); err != nil {
		tree.Remove(tmp)
		return err
	}
	return tree.Rename(tmp, name)
}

// OCIDir is where the course images wait in the guest, as OCI layouts,
// with images.json naming each one.
const OCIDir = "/usr/share/labforge/oci"

// buildContainerImages writes the spec's images into the tree.
func buildContainerImages(ctx context.Context, root string, spec *images.Spec, arts *artifactSet) ([]ociimage.Built, error) {
	if len(spec.ContainerImages) == 0 {
		return nil, nil
	}
	dir := filepath.Join(root, OCIDir)
	built, err := ociimage.Build(ctx, ociimage.Inputs{Root: root, Binaries: arts.binaries(), Spec: spec}, dir)
	if err != nil {
		return nil, err
	}
	type entry struct {
		ociimage.Built
		Layout string `json:"layout"`
	}
	var index []entry
	for _, b := range built {
		index = append(index, entry{b, filepath.Join(OCIDir, filepath.Base(b.Dir))})
	}
	data, _ := json.MarshalIndent(index, "", "  ")
	return built, os.WriteFile(filepath.Join(dir, "images.json"), append(data, '\n'), 0o644)
}

func imagesNote(built []ociimage.Built) string {
	var names []string
	for _, b := range built {
		names = append(names, b.Name)
	}
	return fmt.Sprintf("%d images: %s", len(built), strings.Join(names, ", "))
}
