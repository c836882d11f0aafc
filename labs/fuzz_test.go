package labs

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// FuzzLoad: no exercise file, however malformed, panics the loader.
func FuzzLoad(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("part2", "p2-seccomp", "exercise.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("id: [\n"))
	f.Add([]byte("id: p1-x\npart: 1\nobjectives: [P1.1]\nchecks:\n  - {name: a, command: true}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{
			"part1/p1-x/exercise.yaml": {Data: data},
			"part1/p1-x/README.md":     {Data: []byte("# x\n")},
		}
		_, _ = Load(fsys, ".")
	})
}
