package family

import (
	"strings"
	"testing"

	"github.com/labforge/labforge/images"
)

// Every base of the catalogue has a profile that obtains its root fs the
// way the base is published.
func TestCatalogueFamilies(t *testing.T) {
	kinds := map[images.BaseKind]RootFS{images.FromPackages: Debootstrap, images.CloudImage: CloudImage}
	for _, n := range images.BaseNames() {
		b, _ := images.LookupBase(n)
		p, err := Lookup(b.Family)
		if err != nil {
			t.Fatalf("base %s: %v", b.Name, err)
		}
		if kinds[b.Kind] != p.RootFS {
			t.Errorf("base %s is %s, its family %s builds from %s", b.Name, b.Kind, p.Name, p.RootFS)
		}
	}
	if _, err := Lookup("arch"); err == nil || !strings.Contains(err.Error(), "debian, el9") {
		t.Fatalf("unknown family: %v", err)
	}
}

func TestProfilesComplete(t *testing.T) {
	for _, p := range []Profile{Debian, EL9} {
		if len(p.BootPackages) == 0 || len(p.Clean) == 0 || p.SELinuxType == "" || p.UnitDir == "" ||
			p.SSHService == "" || len(p.NetworkServices) == 0 {
			t.Errorf("profile %s is missing a value: %+v", p.Name, p)
		}
		// What installs the spec's packages: the bootstrap, or a command.
		if (p.RootFS == Debootstrap) == (len(p.Install) > 0) {
			t.Errorf("profile %s: packages are installed by the bootstrap or by Install, exactly one", p.Name)
		}
	}
}

func TestPackages(t *testing.T) {
	p := Profile{PackageNames: map[string]string{"vim-tiny": "vim-minimal", "systemd-boot-efi": ""}}
	got := strings.Join(p.Packages([]string{"strace", "vim-tiny", "systemd-boot-efi"}), " ")
	if got != "strace vim-minimal" {
		t.Fatalf("Packages: %q", got)
	}
}
