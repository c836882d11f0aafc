package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/images"
)

// TestVagrantBox is the students' Vagrant path: the
// box of the base host, added with vagrant box add and booted through the
// top-level Vagrantfile with vagrant-libvirt, runs SELinux enforcing.
// Opt-in (LABFORGE_E2E_VAGRANT=1): it needs vagrant and vagrant-libvirt,
// and boots one more guest. LABFORGE_E2E_VAGRANT_SPEC picks another spec
// (images/container-internals.yaml: the lab host's box, as students get it).
func TestVagrantBox(t *testing.T) {
	if os.Getenv("LABFORGE_E2E_VAGRANT") != "1" {
		t.Skip("set LABFORGE_E2E_VAGRANT=1 to boot the Vagrant box")
	}
	needRoot(t)
	if _, err := exec.LookPath("vagrant"); err != nil {
		t.Fatal("vagrant is not installed (Debian: apt-get install vagrant vagrant-libvirt dnsmasq-base)")
	}
	spec := baseSpec
	if s := os.Getenv("LABFORGE_E2E_VAGRANT_SPEC"); s != "" {
		spec = s
	}
	short := strings.TrimSuffix(filepath.Base(spec), ".yaml")
	boxName := "labforge/e2e-" + short
	tmp := t.TempDir()
	box := filepath.Join(tmp, short+".box")

	ex := mustLabforge(t, "box", "export", spec, "-o", box, "--name", boxName)
	t.Logf("box export: %s\n%s", ex.took.Round(time.Second), ex.stdout)
	if st, err := os.Stat(box); err == nil {
		t.Logf("FIGURE box size: %.1f MiB", float64(st.Size())/(1<<20))
	}

	// The top-level Vagrantfile, with Vagrant's state and boxes kept out of
	// the checkout and the user's home.
	driver := os.Getenv("LABFORGE_VAGRANT_DRIVER")
	if driver == "" {
		driver = "qemu" // KVM does not run guests on the CI machines
	}
	dot := filepath.Join(tmp, "dot")
	env := []string{
		"VAGRANT_CWD=" + root,
		"VAGRANT_DOTFILE_PATH=" + dot,
		"VAGRANT_HOME=" + filepath.Join(tmp, "home"),
		"VAGRANT_DEFAULT_PROVIDER=libvirt",
		"LABFORGE_BOX=" + boxName,
		"LABFORGE_VAGRANT_DRIVER=" + driver,
	}
	t.Cleanup(func() {
		vagrant(t, env, 10*time.Minute, "destroy", "-f")
		// vagrant-libvirt may refuse to undefine a domain with NVRAM;
		// whatever it left goes by the id vagrant recorded.
		if id, err := os.ReadFile(filepath.Join(dot, "machines", "default", "libvirt", "id")); err == nil {
			dom := strings.TrimSpace(string(id))
			exec.Command("virsh", "-c", "qemu:///system", "destroy", dom).Run()                                     //nolint:errcheck
			exec.Command("virsh", "-c", "qemu:///system", "undefine", "--nvram", "--remove-all-storage", dom).Run() //nolint:errcheck
		}
		vagrant(t, env, 5*time.Minute, "box", "remove", "--force", "--all", boxName)
		// vagrant-libvirt uploads the box's disk into the default pool
		// once per box; box remove does not delete it.
		out, _ := exec.Command("virsh", "-c", "qemu:///system", "vol-list", "default").Output()
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "labforge-VAGRANTSLASH-e2e-"+short) {
				exec.Command("virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default", f).Run() //nolint:errcheck
			}
		}
	})

	if r := vagrant(t, env, 10*time.Minute, "box", "add", "--force", "--name", boxName, box); r.code != 0 {
		t.Fatalf("vagrant box add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	up := vagrant(t, env, 40*time.Minute, "up", "--provider=libvirt")
	if up.code != 0 {
		t.Fatalf("vagrant up: exit %d\n%s%s", up.code, up.stdout, up.stderr)
	}
	t.Logf("FIGURE vagrant up (%s): %s", driver, up.took.Round(time.Second))
	if !regexp.MustCompile(`(?i)insecure key|inserting generated public key`).MatchString(up.stdout) {
		t.Errorf("vagrant up did not replace the insecure key:\n%s", up.stdout)
	}

	r := vagrant(t, env, 5*time.Minute, "ssh", "-c", "getenforce")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "Enforcing" {
		t.Fatalf("vagrant ssh -c getenforce: exit %d, %q (stderr %q)", r.code, r.stdout, r.stderr)
	}
	// The first boot's own SELinux record: no denial in the box either.
	r = vagrant(t, env, 5*time.Minute, "ssh", "-c", "sudo ausearch -m avc -ts boot 2>&1 | grep -c 'avc:' || true")
	if n := strings.TrimSpace(r.stdout); n != "0" {
		t.Errorf("denials in the Vagrant guest: %s", n)
	}

	// A box of a spec with the course (the lab host) has it: the student
	// types labs with no labforge on their machine, and starts an exercise.
	if sp, err := images.Load(filepath.Join(root, spec)); err == nil && sp.Course {
		r = vagrant(t, env, 5*time.Minute, "ssh", "-c", "labs && labs start p1-trace-run && test -s ~/labs/p1-trace-run/README.md")
		if r.code != 0 || !strings.Contains(r.stdout, "p2-seccomp") || !strings.Contains(r.stdout, "p1-trace-run is ready") {
			t.Errorf("labs in the Vagrant guest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}

	// vagrant destroy leaves no domain and no UEFI variable store.
	if d := vagrant(t, env, 10*time.Minute, "destroy", "-f"); d.code != 0 {
		t.Fatalf("vagrant destroy: exit %d\n%s%s", d.code, d.stdout, d.stderr)
	}
	if left := domains(t); strings.Contains(left, filepath.Base(root)+"_default") {
		t.Errorf("a domain is left after vagrant destroy: %s", left)
	}
	if left, _ := filepath.Glob("/var/lib/libvirt/qemu/nvram/vagrant-*_VARS.fd"); len(left) > 0 {
		t.Errorf("NVRAM left after vagrant destroy: %v", left)
	}
}

// vagrant runs the vagrant command with env added to labforge's own.
func vagrant(t *testing.T, env []string, timeout time.Duration, args ...string) result {
	t.Helper()
	return run(t, timeout, env, "vagrant", args...)
}
