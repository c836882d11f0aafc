package instance

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/labforge/labforge/provision"
)

// An instance's directory is closed to the machine's other users, and the
// seed in it (the guest's SSH host key) is root's alone.
func TestInstanceFilesPrivate(t *testing.T) {
	for _, gid := range []int{os.Getgid(), -1} {
		dir := filepath.Join(t.TempDir(), "inst")
		if err := privateDir(dir, gid); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o750)
		switch {
		case os.Geteuid() != 0:
			want = 0o700 // the user's own QEMU
		case gid < 0:
			want = 0o711
		}
		if st.Mode().Perm() != want {
			t.Fatalf("gid %d: directory mode %v, want %v", gid, st.Mode().Perm(), want)
		}
		if os.Geteuid() == 0 && gid >= 0 && int(st.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Fatalf("directory group %d, want %d", st.Sys().(*syscall.Stat_t).Gid, gid)
		}
		// Made again over a directory an older labforge left open.
		os.Chmod(dir, 0o755)
		if err := privateDir(dir, gid); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(dir); st.Mode().Perm() != want {
			t.Fatalf("an open directory stays %v", st.Mode().Perm())
		}
	}
	seed := filepath.Join(t.TempDir(), "seed.iso")
	s := provision.Seed{InstanceID: "i", Hostname: "h", User: "u", AuthorizedKey: "ssh-ed25519 AAAA u"}
	if err := s.WriteISO(seed); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(seed); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
}
