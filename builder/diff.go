package builder

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Change is one difference between two images.
type Change struct {
	Kind string `json:"kind"` // package, file, kernel, policy, os
	Name string `json:"name"`
	A    string `json:"a"` // "" when absent from A
	B    string `json:"b"`
}

// DiffRecords compares two build records (as written beside an image or an
// export) and, where both have a manifest beside them, their file trees.
func DiffRecords(aPath, bPath string) ([]Change, error) {
	a, err := loadDescribed(aPath)
	if err != nil {
		return nil, err
	}
	b, err := loadDescribed(bPath)
	if err != nil {
		return nil, err
	}
	var out []Change
	for _, f := range []struct{ kind, a, b string }{
		{"os", a.OSRelease, b.OSRelease}, {"kernel", a.Kernel, b.Kernel}, {"policy", a.Policy, b.Policy},
	} {
		if f.a != f.b {
			out = append(out, Change{Kind: f.kind, Name: f.kind, A: f.a, B: f.b})
		}
	}
	out = append(out, diffMaps("package", a.Packages, b.Packages)...)
	ma, errA := readManifestFile(treeBeside(aPath))
	mb, errB := readManifestFile(treeBeside(bPath))
	switch {
	case os.IsNotExist(errA) && os.IsNotExist(errB): // records alone: no files to compare
	case errA != nil:
		return nil, fmt.Errorf("file manifest of %s: %w", aPath, errA)
	case errB != nil:
		return nil, fmt.Errorf("file manifest of %s: %w", bPath, errB)
	default:
		out = append(out, diffMaps("file", ma, mb)...)
	}
	return out, nil
}

func loadDescribed(path string) (*Description, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Description == nil {
		return nil, fmt.Errorf("%s: no description of the image (rebuild it with this labforge)", path)
	}
	return r.Description, nil
}

func readManifestFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadManifest(f)
}

func diffMaps(kind string, a, b map[string]string) []Change {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []Change
	for _, k := range keys {
		if a[k] != b[k] {
			out = append(out, Change{Kind: kind, Name: k, A: a[k], B: b[k]})
		}
	}
	return out
}

// treeBeside is the manifest kept beside a record: X.record.json (cache)
// or X.json (export) has X.tree.
func treeBeside(record string) string {
	base := strings.TrimSuffix(record, ".json")
	return strings.TrimSuffix(base, ".record") + ".tree"
}
