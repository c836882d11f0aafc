package builder

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
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

// policyModules are local SELinux modules, kept as reviewed source (.te)
// and compiled inside the image's own tree with its own tools.
//
//go:embed selinux/*.te
var policyModules embed.FS

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
	if err := clearBuildTraces(root); err != nil {
		return err
	}
	if err := inChroot(ctx, root, log, "systemctl", "enable", "systemd-networkd", "systemd-resolved"); err != nil {
		return err
	}
	// Every labforge guest boots with a NoCloud seed, so cloud-init need
	// not be detected: its generator (ds-identify) is masked and its target
	// enabled outright. Under SELinux the generator could not even write
	// its result to /run, and disabled cloud-init.
	links := map[string]string{
		"etc/systemd/system-generators/cloud-init-generator":           "/dev/null",
		"etc/systemd/system/multi-user.target.wants/cloud-init.target": "/lib/systemd/system/cloud-init.target",
	}
	for link, target := range links {
		path := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		_ = os.Remove(path)
		if err := os.Symlink(target, path); err != nil {
			return fmt.Errorf("link %s: %w", link, err)
		}
	}
	if spec.SELinux != "disabled" {
		if err := installPolicyModules(ctx, root, spec, log); err != nil {
			return err
		}
		// Label offline, so the first boot is already enforcing and needs
		// no relabel-and-reboot cycle.
		fc := "/etc/selinux/default/contexts/files/file_contexts"
		if err := inChroot(ctx, root, log, "setfiles", "-F", "-e", "/proc", "-e", "/sys", fc, "/"); err != nil {
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

// installPolicyModules compiles and loads labforge's own policy modules and
// the spec's into the tree's policy store, in one transaction.
func installPolicyModules(ctx context.Context, root string, spec *images.Spec, log io.Writer) error {
	mods, err := fs.Glob(policyModules, "selinux/*.te")
	if err != nil {
		return err
	}
	work := filepath.Join(root, "tmp", "labforge-selinux")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var pps []string
	for _, m := range mods {
		src, err := policyModules.ReadFile(m)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(m), ".te")
		if err := os.WriteFile(filepath.Join(work, name+".te"), src, 0o644); err != nil {
			return err
		}
		in := "/tmp/labforge-selinux/" + name
		if err := inChroot(ctx, root, log, "checkmodule", "-M", "-m", "-o", in+".mod", in+".te"); err != nil {
			return fmt.Errorf("compile policy module %s: %w", m, err)
		}
		if err := inChroot(ctx, root, log, "semodule_package", "-o", in+".pp", "-m", in+".mod"); err != nil {
			return fmt.Errorf("package policy module %s: %w", m, err)
		}
		pps = append(pps, in+".pp")
	}
	more, err := specPolicyModules(ctx, root, work, spec, log)
	if err != nil {
		return err
	}
	pps = append(pps, more...)
	if len(pps) == 0 {
		return nil
	}
	args := []string{"semodule"}
	for _, pp := range pps {
		args = append(args, "-i", pp)
	}
	if err := inChroot(ctx, root, log, args...); err != nil {
		return fmt.Errorf("load policy modules: %w", err)
	}
	return nil
}

// clearBuildTraces empties what bootstrapping logged and cached, as the
// seal does for provisioned images: the disk must pass the seal suite.
func clearBuildTraces(root string) error {
	err := filepath.WalkDir(filepath.Join(root, "var/log"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return os.Truncate(p, 0)
	})
	if err != nil {
		return fmt.Errorf("clear logs: %w", err)
	}
	for _, pat := range []string{"var/cache/apt/*.bin", "var/lib/apt/lists/*_Packages", "var/lib/apt/lists/*Release*", "root/.bash_history"} {
		m, _ := filepath.Glob(filepath.Join(root, pat))
		for _, f := range m {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// refpolicySource is the reference policy's source in Debian's
// selinux-policy-src: it carries modules (container, podman, docker) that
// the binary policy leaves out.
const refpolicySource = "/usr/src/selinux-policy-src.tar.zst"

// specPolicyModules builds the spec's modules with the distribution's
// policy development Makefile (selinux-policy-dev), which gives them the
// reference policy's interfaces, and returns the packages to load.
func specPolicyModules(ctx context.Context, root, work string, spec *images.Spec, log io.Writer) ([]string, error) {
	if len(spec.PolicyModules) == 0 {
		return nil, nil
	}
	const in = "/tmp/labforge-selinux"
	var targets, fromSource []string
	for _, m := range spec.PolicyModules {
		if !strings.HasSuffix(m, ".te") {
			fromSource = append(fromSource, m)
			targets = append(targets, m+".pp")
			continue
		}
		stem := strings.TrimSuffix(m, ".te")
		for _, ext := range []string{".te", ".fc", ".if"} {
			data, err := os.ReadFile(filepath.Join(spec.Dir, stem+ext))
			if err != nil {
				if ext != ".te" && os.IsNotExist(err) {
					continue
				}
				return nil, fmt.Errorf("policy module %s: %w", m, err)
			}
			if err := os.WriteFile(filepath.Join(work, filepath.Base(stem)+ext), data, 0o644); err != nil {
				return nil, err
			}
		}
		targets = append(targets, filepath.Base(stem)+".pp")
	}
	if len(fromSource) > 0 {
		if _, err := os.Stat(filepath.Join(root, refpolicySource)); err != nil {
			return nil, fmt.Errorf("policy modules %s need the reference policy source: add selinux-policy-src (and selinux-policy-dev, make, zstd) to packages", strings.Join(fromSource, ", "))
		}
		args := []string{"tar", "--zstd", "-xf", refpolicySource, "--wildcards", "--strip-components=4", "-C", in}
		for _, m := range fromSource {
			for _, ext := range []string{".te", ".fc", ".if"} {
				args = append(args, "selinux-policy-src/policy/modules/*/"+m+ext)
			}
		}
		if err := inChroot(ctx, root, log, args...); err != nil {
			return nil, fmt.Errorf("extract policy modules %s: %w", strings.Join(fromSource, ", "), err)
		}
	}
	args := append([]string{"make", "-C", in, "-f", "/usr/share/selinux/devel/Makefile"}, targets...)
	if err := inChroot(ctx, root, log, args...); err != nil {
		return nil, fmt.Errorf("compile policy modules: %w", err)
	}
	var pps []string
	for _, t := range targets {
		pps = append(pps, in+"/"+t)
	}
	return pps, nil
}
