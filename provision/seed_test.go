package provision

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
	"go.yaml.in/yaml/v3"

	"github.com/labforge/labforge/internal/sshx"
)

func testSeed(t *testing.T) Seed {
	user, err := sshx.NewKeyPair("student@test")
	if err != nil {
		t.Fatal(err)
	}
	host, err := sshx.NewKeyPair("host")
	if err != nil {
		t.Fatal(err)
	}
	return Seed{InstanceID: "i-1", Hostname: "lab-1", User: "student", AuthorizedKey: user.AuthorizedKey,
		HostKeyPrivate: string(host.PrivatePEM), HostKeyPublic: host.AuthorizedKey}
}

func TestSeedISORoundTrip(t *testing.T) {
	s := testSeed(t)
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := s.WriteISO(path); err != nil {
		t.Fatal(err)
	}
	ud, err := readISOFile(path, "user-data")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ud), "#cloud-config\n") {
		t.Fatalf("user-data lacks the #cloud-config header:\n%s", ud)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatal(err)
	}
	keys := doc["ssh_keys"].(map[string]any)
	if keys["ed25519_public"] != s.HostKeyPublic || !strings.Contains(keys["ed25519_private"].(string), "OPENSSH PRIVATE KEY") {
		t.Fatalf("host key not carried: %v", keys)
	}
	users := doc["users"].([]any)
	u := users[0].(map[string]any)
	if u["name"] != "student" || u["ssh_authorized_keys"].([]any)[0] != s.AuthorizedKey {
		t.Fatalf("user not carried: %v", u)
	}
	md, err := readISOFile(path, "meta-data")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "instance-id: i-1") {
		t.Fatalf("meta-data: %s", md)
	}
	// The volume label is what NoCloud finds the seed by.
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw[32768:34816]), "CIDATA") && !strings.Contains(string(raw[32768:34816]), "cidata") {
		t.Fatal("volume label cidata not found in the primary volume descriptor")
	}
}

func TestSeedRejectsMissingFields(t *testing.T) {
	if err := (Seed{Hostname: "x"}).WriteISO(filepath.Join(t.TempDir(), "s.iso")); err == nil {
		t.Fatal("want an error for a seed without user or key")
	}
}

func TestUserDataCannotBeInjected(t *testing.T) {
	s := testSeed(t)
	s.Hostname = "evil\nruncmd: [reboot]"
	ud, err := s.UserData()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["runcmd"]; ok {
		t.Fatal("a value broke out of its field")
	}
}

// ReadISOFile reads one file back from a seed image.
func readISOFile(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return nil, err
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, err
	}
	kids, err := root.GetChildren()
	if err != nil {
		return nil, err
	}
	for _, k := range kids {
		if k.Name() == name {
			return io.ReadAll(k.Reader())
		}
	}
	return nil, fmt.Errorf("%s: no file %q", path, name)
}
