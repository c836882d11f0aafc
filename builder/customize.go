package builder

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/runx"
)

//go:embed templates
var templates embed.FS

// bootParams are the values the boot files are written from.
type bootParams struct {
	Title      string
	RootUUID   string
	SELinux    string
	KernelArgs string
}

func render(name string, p bootParams) ([]byte, error) {
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

// customize turns a bootstrapped tree into one that boots from the disk
// labforge makes: fstab, network, cloud-init, SELinux mode and labels.
func customize(ctx context.Context, root string, spec *images.Spec, p bootParams, log io.Writer) error {
	files := map[string]string{
		"etc/fstab":                             "fstab",
		"etc/systemd/network/20-wired.network":  "wired.network",
		"etc/cloud/cloud.cfg.d/90-labforge.cfg": "cloud.cfg",
		"etc/selinux/config":                    "selinux.config",
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, dst := range names {
		b, err := render(files[dst], p)
		if err != nil {
			return err
		}
		path := filepath.Join(root, dst)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	}
	// Each clone makes its own identity at first boot.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte(spec.Name+"\n"), 0o644); err != nil {
		return err
	}
	if err := runx.Run(ctx, log, nil, "chroot", root, "systemctl", "enable", "systemd-networkd", "systemd-resolved"); err != nil {
		return err
	}
	if spec.SELinux != "disabled" {
		// Label offline, so the first boot is already enforcing and needs
		// no relabel-and-reboot cycle.
		fc := "/etc/selinux/default/contexts/files/file_contexts"
		if err := runx.Run(ctx, log, nil, "chroot", root, "setfiles", "-F", fc, "/"); err != nil {
			return fmt.Errorf("label root fs for SELinux: %w", err)
		}
	}
	return nil
}

// kernelArgs is the kernel command line the spec asks for.
func kernelArgs(spec *images.Spec) string {
	args := []string{}
	switch spec.SELinux {
	case "enforcing", "permissive":
		args = append(args, "security=selinux", "selinux=1")
	case "disabled":
		args = append(args, "selinux=0")
	}
	args = append(args, spec.KernelArgs...)
	return strings.Join(args, " ")
}
