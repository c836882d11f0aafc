package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/runx"
)

//go:embed templates
var templates embed.FS

// policyModules are local SELinux modules, kept as reviewed source (.te)
// and compiled inside the image's own tree with its own tools.
//
//go:embed selinux/*.te
var policyModules embed.FS

// embeddedDigest sums the templates and policy modules built into
// labforge: part of every base disk's key. Computed on first use, not at
// start-up, since most commands never make a key.
var embeddedDigest = sync.OnceValue(func() string {
	h := sha256.New()
	for _, fsys := range []embed.FS{templates, policyModules} {
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fsys.ReadFile(p)
			fmt.Fprintf(h, "%s %d\n", p, len(b))
			h.Write(b)
			return err
		})
		if err != nil {
			panic("embedded files: " + err.Error()) // they are compiled in
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
})

// bootParams are the values the boot files are written from.
type bootParams struct {
	Title      string
	RootUUID   string
	SELinux    string
	KernelArgs string
	// SELinuxType is the family's policy name (its profile's).
	SELinuxType string
}

func render(name string, p any) ([]byte, error) {
	t, err := template.ParseFS(templates, "templates/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// copyTree makes a private, writable copy of the cached root fs.
func copyTree(ctx context.Context, src, dst string, log io.Writer) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return runx.Run(ctx, log, nil, "cp", "-a", "--reflink=auto", src+"/.", dst+"/")
}

// kernelArgs is the kernel command line the spec asks for.
func kernelArgs(spec *images.Spec) string {
	// no_timer_check: under TCG on a loaded host the kernel's early check
	// of the IO-APIC timer can fail and panic the guest ("IO-APIC + timer
	// doesn't work!", seen with four guests booting on two cores); cloud
	// images pass it for the same reason.
	args := []string{"no_timer_check"}
	switch spec.SELinux {
	case "enforcing", "permissive":
		args = append(args, "security=selinux", "selinux=1")
	case "disabled":
		args = append(args, "selinux=0")
	}
	args = append(args, spec.KernelArgs...)
	return strings.Join(args, " ")
}

// inChroot runs a command inside root with /proc mounted, which
// libselinux's labelling (it sets labels through /proc/self/fd) needs.
func inChroot(ctx context.Context, root string, log io.Writer, args ...string) error {
	proc := filepath.Join(root, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return err
	}
	if err := mountProc(proc); err != nil {
		return fmt.Errorf("mount /proc in %s: %w", root, err)
	}
	defer unmount(proc)
	return runx.Run(ctx, log, nil, "chroot", append([]string{root}, args...)...)
}
