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

// install copies every program into the tree.
func (s *artifactSet) install(root string) error {
	for _, r := range s.results {
		dir := filepath.Join(root, r.dest())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, b := range r.Binaries {
			if err := copyFile(b.Path, filepath.Join(dir, b.Name), 0o755); err != nil {
				return fmt.Errorf("install %s: %w", b.Name, err)
			}
		}
	}
	return nil
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

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
