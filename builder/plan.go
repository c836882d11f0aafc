package builder

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/labforge/labforge/builder/family"
	"github.com/labforge/labforge/images"
)

// A plan is the customisation of one image, made from the spec and its
// family's profile before anything runs: an ordered list of steps that
// apply executes in the tree and that tests compare as text. Every value
// that depends on the family comes from the profile, and the step names
// the profile fields it used.
type plan struct {
	RootFS []step // how the tree comes to be, with the spec's packages
	Tree   []step // what labforge then does inside it
}

// op is what a step does.
type op string

const (
	opHost     op = "host"     // run Args on the build host ($ROOT is the tree)
	opBase     op = "base"     // a verified cloud image (Src: URL, Path: sha256)
	opRun      op = "run"      // run Args chrooted in the tree
	opWrite    op = "write"    // write Data to Path with Mode
	opCopy     op = "copy"     // copy Src (relative to the spec) to Path
	opMkdir    op = "mkdir"    // make directory Path
	opLink     op = "link"     // Path becomes a symlink to Src
	opRemove   op = "remove"   // remove whatever matches the glob Path
	opTruncate op = "truncate" // empty every regular file under Path
	opRequire  op = "require"  // fail with Err when Path does not exist
)

// step is one action of a plan. Paths are inside the tree, absolute.
type step struct {
	Op       op
	Args     []string
	Path     string
	Src      string
	Data     []byte
	Mode     fs.FileMode
	Optional bool // copy: a missing source is skipped
	// Err is the context of an error (or, for require, the message).
	Err string
	// Family names the profile fields that shaped this step.
	Family []string
}

// planParams are the values of one build that are not in the spec.
type planParams struct {
	Boot   bootParams
	Mirror string // debootstrap's mirror, "" for its default
}

// policyWork is where modules are compiled inside the tree.
const policyWork = "/tmp/labforge-selinux"

// makePlan is the plan of spec on base, whose family is fam.
func makePlan(spec *images.Spec, base images.Base, fam family.Profile, pp planParams) (*plan, error) {
	if want := map[images.BaseKind]family.RootFS{images.FromPackages: family.Debootstrap, images.CloudImage: family.CloudImage}[base.Kind]; want != fam.RootFS {
		return nil, fmt.Errorf("base %s is a %s base but family %s builds from %s", base.Name, base.Kind, fam.Name, fam.RootFS)
	}
	p := &plan{RootFS: rootfsPlan(spec, base, fam, pp.Mirror)}
	t := &p.Tree
	add := func(s step) { *t = append(*t, s) }

	// Only a disk labforge makes needs labforge's fstab and network file;
	// a cloud image keeps its own.
	files := map[string]string{
		"/etc/cloud/cloud.cfg.d/90-labforge.cfg": "cloud.cfg",
		"/etc/selinux/config":                    "selinux.config",
		"/etc/profile.d/labforge-path.sh":        "path.sh",
	}
	fileFamily := map[string][]string{"/etc/selinux/config": {"SELinuxType"}}
	if fam.RootFS == family.Debootstrap {
		files["/etc/fstab"] = "fstab"
		fileFamily["/etc/fstab"] = []string{"RootFS"}
	}
	if fam.NetworkConfig != "" {
		files["/"+fam.NetworkConfig] = "wired.network"
		fileFamily["/"+fam.NetworkConfig] = []string{"NetworkConfig"}
		files["/etc/systemd/resolved.conf.d/90-labforge.conf"] = "resolved.conf"
		fileFamily["/etc/systemd/resolved.conf.d/90-labforge.conf"] = []string{"NetworkConfig"}
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	boot := pp.Boot
	boot.SELinuxType = fam.SELinuxType
	for _, dst := range names {
		b, err := render(files[dst], boot)
		if err != nil {
			return nil, err
		}
		add(step{Op: opWrite, Path: dst, Data: b, Mode: 0o644, Err: "write " + strings.TrimPrefix(dst, "/"), Family: fileFamily[dst]})
	}
	// Each clone makes its own identity at first boot.
	add(step{Op: opWrite, Path: "/etc/machine-id", Mode: 0o444})
	add(step{Op: opRemove, Path: "/var/lib/dbus/machine-id"})
	add(step{Op: opRemove, Path: "/etc/ssh/ssh_host_*"})
	add(step{Op: opWrite, Path: "/etc/hostname", Data: []byte(spec.Name + "\n"), Mode: 0o644})
	// What bootstrapping logged and cached goes, as the seal does for
	// provisioned images: the disk must pass the seal suite.
	add(step{Op: opTruncate, Path: "/var/log", Err: "clear logs"})
	for _, g := range fam.BuildTraces {
		add(step{Op: opRemove, Path: "/" + g, Family: []string{"BuildTraces"}})
	}
	add(step{Op: opRemove, Path: "/root/.bash_history"})
	add(step{Op: opRequire, Path: fam.UnitDir + "/" + fam.SSHService + ".service",
		Err: "the " + fam.Name + " family's OpenSSH unit " + fam.SSHService + ".service is missing from the tree", Family: []string{"UnitDir", "SSHService"}})
	add(step{Op: opRun, Args: append([]string{"systemctl", "enable"}, fam.NetworkServices...), Family: []string{"NetworkServices"}})
	// Every labforge guest boots with a NoCloud seed, so cloud-init need
	// not be detected: its generator (ds-identify) is masked and its target
	// enabled outright. Under SELinux the generator could not even write
	// its result to /run, and disabled cloud-init.
	add(step{Op: opLink, Path: "/etc/systemd/system-generators/cloud-init-generator", Src: "/dev/null", Err: "link etc/systemd/system-generators/cloud-init-generator"})
	add(step{Op: opLink, Path: "/etc/systemd/system/multi-user.target.wants/cloud-init.target", Src: fam.UnitDir + "/cloud-init.target",
		Err: "link etc/systemd/system/multi-user.target.wants/cloud-init.target", Family: []string{"UnitDir"}})
	if len(fam.KernelArgs) > 0 && pp.Boot.KernelArgs != "" {
		add(step{Op: opRun, Args: append(append([]string{}, fam.KernelArgs...), "--args="+pp.Boot.KernelArgs), Err: "set kernel arguments", Family: []string{"KernelArgs"}})
	}
	if spec.SELinux != "disabled" {
		mods, err := policyPlan(spec, fam)
		if err != nil {
			return nil, err
		}
		*t = append(*t, mods...)
		// Label offline, so the first boot is already enforcing and needs
		// no relabel-and-reboot cycle.
		fc := "/etc/selinux/" + fam.SELinuxType + "/contexts/files/file_contexts"
		add(step{Op: opRun, Args: []string{"setfiles", "-F", "-e", "/proc", "-e", "/sys", fc, "/"}, Err: "label root fs for SELinux", Family: []string{"SELinuxType"}})
	}
	return p, nil
}

// rootfsPlan is how the tree is obtained, with the spec's packages in it.
func rootfsPlan(spec *images.Spec, base images.Base, fam family.Profile, mirror string) []step {
	var s []step
	switch fam.RootFS {
	case family.Debootstrap:
		r := newRootfsSpec(base, fam, spec.Packages, "")
		r.Mirror = mirror
		s = append(s, step{Op: opHost, Args: append([]string{"debootstrap"}, r.debootstrapArgs("$ROOT")...), Family: []string{"RootFS", "BootPackages", "PackageNames"}})
	case family.CloudImage:
		s = append(s, step{Op: opBase, Src: base.URL, Path: base.SHA256, Family: []string{"RootFS"}})
	}
	if len(fam.Install) > 0 {
		pkgs := slices.Compact(sortedCopy(append(append([]string{}, fam.BootPackages...), fam.Packages(spec.Packages)...)))
		s = append(s, step{Op: opRun, Args: append(append([]string{}, fam.Install...), pkgs...), Family: []string{"Install", "BootPackages", "PackageNames"}})
	}
	// Nothing downloaded needs to stay in every image.
	s = append(s, step{Op: opRun, Args: fam.Clean, Family: []string{"Clean"}})
	return s
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// policyPlan compiles labforge's own policy modules and the spec's inside
// the tree, with its own tools, and loads them in one transaction.
func policyPlan(spec *images.Spec, fam family.Profile) ([]step, error) {
	local := []string{"LocalModules"}
	// Without modules of the spec's own, whether there is any work at all
	// is the family's local modules' doing.
	var work []string
	if len(spec.PolicyModules) == 0 {
		work = local
	}
	s := []step{{Op: opMkdir, Path: policyWork, Family: work}}
	var pps []string
	for _, name := range fam.LocalModules {
		m := "selinux/" + name + ".te"
		src, err := policyModules.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("family %s: local policy module %s: %w", fam.Name, name, err)
		}
		in := policyWork + "/" + name
		s = append(s,
			step{Op: opWrite, Path: in + ".te", Data: src, Mode: 0o644, Family: local},
			step{Op: opRun, Args: []string{"checkmodule", "-M", "-m", "-o", in + ".mod", in + ".te"}, Err: "compile policy module " + m, Family: local},
			step{Op: opRun, Args: []string{"semodule_package", "-o", in + ".pp", "-m", in + ".mod"}, Err: "package policy module " + m, Family: local})
		pps = append(pps, in+".pp")
	}
	// The spec's modules go through the distribution's policy development
	// Makefile, which gives them the reference policy's interfaces.
	var targets, fromSource, provided []string
	for i, m := range spec.PolicyModules {
		if !strings.HasSuffix(m, ".te") {
			if fam.Provides(m) {
				provided = append(provided, m)
				continue
			}
			if fam.RefpolicySource == "" {
				return nil, spec.FieldError(fmt.Sprintf("policyModules[%d]", i),
					"module %q: the %s family's policy does not carry it and has no reference policy source to build it from (it has: %s)",
					m, fam.Name, strings.Join(fam.ProvidedModules, ", "))
			}
			fromSource = append(fromSource, m)
			targets = append(targets, m+".pp")
			continue
		}
		stem := strings.TrimSuffix(m, ".te")
		for _, ext := range []string{".te", ".fc", ".if"} {
			s = append(s, step{Op: opCopy, Src: stem + ext, Path: policyWork + "/" + path.Base(stem) + ext, Optional: ext != ".te", Err: "policy module " + m})
		}
		targets = append(targets, path.Base(stem)+".pp")
	}
	// Which named modules are built here depends on what the family's
	// policy already carries and whether it has the source to build more.
	var modFamily []string
	if len(provided)+len(fromSource) > 0 {
		modFamily = []string{"ProvidedModules", "RefpolicySource"}
	}
	if len(fromSource) > 0 {
		names := strings.Join(fromSource, ", ")
		src := []string{"RefpolicySource"}
		s = append(s, step{Op: opRequire, Path: fam.RefpolicySource, Family: src,
			Err: fmt.Sprintf("policy modules %s need the reference policy source: add selinux-policy-src (and selinux-policy-dev, make, zstd) to packages", names)})
		args := []string{"tar", "--zstd", "-xf", fam.RefpolicySource, "--wildcards", "--strip-components=4", "-C", policyWork}
		for _, m := range fromSource {
			for _, ext := range []string{".te", ".fc", ".if"} {
				args = append(args, "selinux-policy-src/policy/modules/*/"+m+ext)
			}
		}
		s = append(s, step{Op: opRun, Args: args, Err: "extract policy modules " + names, Family: src})
	}
	if len(targets) > 0 {
		args := append([]string{"make", "-C", policyWork, "-f", "/usr/share/selinux/devel/Makefile"}, targets...)
		s = append(s, step{Op: opRun, Args: args, Err: "compile policy modules", Family: modFamily})
		for _, t := range targets {
			pps = append(pps, policyWork+"/"+t)
		}
	}
	if len(pps) == 0 {
		return nil, nil
	}
	args := []string{"semodule"}
	for _, pp := range pps {
		args = append(args, "-i", pp)
	}
	s = append(s, step{Op: opRun, Args: args, Err: "load policy modules", Family: append(local, modFamily...)})
	// The sources need not ship.
	s = append(s, step{Op: opRemove, Path: policyWork, Family: work})
	return s, nil
}
