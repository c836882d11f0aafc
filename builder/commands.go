package builder

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/internal/warm"
	"github.com/labforge/labforge/verify"
)

// What labforge's image, cache and instance commands need of the build
// side, so that they only read flags and print.

// Holder names the other labforge that runs the guest called name and
// removes it when done (a running build, or one making a warm state from
// it), or is "": `down` and the like leave such a guest to it.
func Holder(name string) string {
	if spec, ok := strings.CutPrefix(name, BuildGuestPrefix); ok && Building(paths.Cache(), spec) {
		return fmt.Sprintf("the build of %s that runs it (it goes when the build ends)", spec)
	}
	if warm.Making(name) {
		return "the labforge making a warm state from it (it goes when that is done)"
	}
	return ""
}

// CachePruneUnused is CachePrune keeping what the existing instances use
// (their images and the warm states they were restored from), saying on w
// what it removed and how much that freed.
func CachePruneUnused(w io.Writer, cacheDir string, cutoff time.Time) error {
	names, err := instance.List()
	if err != nil {
		return err
	}
	var inUse []string
	for _, n := range names {
		if inst, err := instance.Load(n); err == nil {
			inUse = append(inUse, inst.Image)
			if inst.Restored != "" {
				inUse = append(inUse, filepath.Join(warm.Root(), inst.Restored, "disk.qcow2"))
			}
		}
	}
	removed, err := CachePrune(cacheDir, cutoff, inUse)
	var freed int64
	for _, e := range removed {
		freed += e.Bytes
		fmt.Fprintf(w, "removed %s %s (%s)\n", e.Kind, e.Key, progress.Bytes(e.Bytes))
	}
	fmt.Fprintf(w, "freed %s\n", progress.Bytes(freed))
	return err
}

// WriteCacheList prints the entries as a table with their total size.
func WriteCacheList(w io.Writer, entries []CacheEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tKEY\tSIZE\tAGE\tUSED BY")
	var total int64
	for _, e := range entries {
		total += e.Bytes
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Key, progress.Bytes(e.Bytes), time.Since(e.Used).Round(time.Minute), e.Spec)
	}
	fmt.Fprintf(tw, "total\t\t%s\t\t\n", progress.Bytes(total))
	return tw.Flush()
}

// VerifyImage runs a suite (the file suitePath; images.SealSuite when "")
// on image's own files, in a chroot of its root unpacked into cacheDir,
// without booting it.
func VerifyImage(ctx context.Context, image, suitePath, cacheDir string) (*verify.Report, error) {
	suite, err := images.SealSuite()
	if suitePath != "" {
		suite, err = verify.Load(suitePath)
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	tree, err := OpenTree(ctx, image, cacheDir)
	if err != nil {
		return nil, err
	}
	defer tree.Close()
	rep := verify.Run(ctx, tree, suite, verify.Options{})
	rep.Host = filepath.Base(image)
	return rep, nil
}

// WriteChanges prints DiffRecords' changes as JSON, or as a table (long
// values cut) with a count by kind.
func WriteChanges(w io.Writer, changes []Change, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if changes == nil {
			changes = []Change{}
		}
		return enc.Encode(changes)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tA\tB")
	counts := map[string]int{}
	for _, c := range changes {
		counts[c.Kind]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Kind, c.Name, orAbsent(c.A), orAbsent(c.B))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d differences (%d packages, %d files)\n", len(changes), counts["package"], counts["file"])
	return err
}

// orAbsent is a change's value for a table cell: one line, at most 60
// characters.
func orAbsent(s string) string {
	if s == "" {
		return "(absent)"
	}
	s = strings.ReplaceAll(s, "\t", " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// ExportBoxAs is ExportBox as a step of p, with what o and out leave
// open filled in: the box labforge/STEM at dist/STEM.box, where stem is
// the spec's name or the image file's without .qcow2, and the UEFI
// firmware this host's catalogue lists. It makes cacheDir,
// ExportBox's work directory, and returns the options the box has.
func ExportBoxAs(ctx context.Context, p *progress.Printer, image, stem, out, cacheDir string, o BoxOptions) (*Box, BoxOptions, error) {
	o.Name = cmp.Or(o.Name, "labforge/"+stem)
	if o.Loaders == nil {
		for _, f := range virt.Firmwares() {
			o.Loaders = append(o.Loaders, f.Code)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, o, err
	}
	var box *Box
	err := p.Timed("box", func() (string, error) {
		var err error
		if box, err = ExportBox(ctx, image, cmp.Or(out, filepath.Join("dist", stem+".box")), cacheDir, o); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d MiB, %d CPUs, UEFI", o.MemoryMiB, o.CPUs), nil
	})
	return box, o, err
}
