package images_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/images"
)

// The seal suite's checks catch what a build can leave: each is run on
// this machine against a small fake tree (its absolute paths moved there),
// once clean and once with the leftover it must catch.
func TestSealChecksCatchLeftovers(t *testing.T) {
	suite, err := images.SealSuite()
	if err != nil {
		t.Fatal(err)
	}
	command := func(name string) string {
		for _, c := range suite.Checks {
			if c.Name == name {
				return c.Command
			}
		}
		t.Fatalf("no check %q in the seal suite", name)
		return ""
	}
	run := func(cmd string) bool {
		return exec.Command("sh", "-c", cmd).Run() == nil
	}
	root := t.TempDir()
	moved := func(cmd string, paths ...string) string {
		// One pass, so the fake root (itself under /tmp) is not moved again.
		pairs := []string{"find / -xdev", "find " + root + " -xdev"}
		for _, p := range paths {
			pairs = append(pairs, " "+p, " "+root+p)
		}
		return strings.NewReplacer(pairs...).Replace(cmd)
	}
	write := func(p, data string) {
		os.MkdirAll(filepath.Dir(root+p), 0o755)
		if err := os.WriteFile(root+p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	pw := moved(command("no passwords"), "/etc/shadow")
	write("/etc/shadow", "root:*:19000:0:99999:7:::\nstudent:!:19000::::::\n")
	if !run(pw) {
		t.Fatal("no passwords: fails on locked accounts")
	}
	write("/etc/shadow", "root:*:19000:0:99999:7:::\nstudent::19000::::::\n")
	if run(pw) {
		t.Fatal("no passwords: an empty password field (a login with no password) passed")
	}

	dirs := []string{"/etc", "/root", "/home", "/srv", "/opt", "/usr/local", "/var/lib", "/var/backups", "/tmp", "/var/tmp"}
	for _, d := range dirs {
		os.MkdirAll(root+d, 0o755)
	}
	keys := moved(command("no private keys"), dirs...)
	write("/etc/ssl/certs/ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if !run(keys) {
		t.Fatal("no private keys: fails on a certificate")
	}
	write("/opt/app/tls.key", "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n")
	if run(keys) {
		t.Fatal("no private keys: a key a step left in /opt passed")
	}
	os.Remove(root + "/opt/app/tls.key")

	ak := moved(command("no authorized keys"))
	if !run(ak) {
		t.Fatal("no authorized keys: fails on a clean tree")
	}
	write("/srv/git/.ssh/authorized_keys", "ssh-ed25519 AAAA x\n")
	if run(ak) {
		t.Fatal("no authorized keys: a key outside /root and /home passed")
	}

	tmp := moved(command("nothing left in /tmp and /var/tmp"), "/tmp", "/var/tmp")
	if !run(tmp) {
		t.Fatal("nothing left in /tmp: fails on empty directories")
	}
	write("/var/tmp/build.log", "x")
	if run(tmp) {
		t.Fatal("nothing left in /tmp: a file in /var/tmp passed")
	}
}
