package images

import (
	"strings"
	"testing"
)

// FuzzParse: no spec, however malformed, panics the loader, and every
// rejection is a single line.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: x\nbase: debian-12\n"))
	f.Add([]byte("name: x\nbase: debian-12\nvm:\n  memory: 2GiB\n  cpus: 2\nprovision:\n  - name: a\n    run: true\n"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("disk: {size: 99999999999999999999GiB}\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("name: x\nname: y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yaml", data)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
	})
}
