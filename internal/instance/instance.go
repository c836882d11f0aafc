// Package instance brings lab hosts up and down: a copy-on-write overlay
// of a built image, a seed with fresh keys, a libvirt domain, and the
// record of how to reach it.
package instance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/sshx"
)

// DomainPrefix marks every libvirt domain labforge owns.
const DomainPrefix = "labforge-"

// Instance is the record of one running lab host, kept as instance.json.
type Instance struct {
	Name     string    `json:"name"`
	Domain   string    `json:"domain"`
	Spec     string    `json:"spec"`
	Image    string    `json:"image"`
	User     string    `json:"user"`
	SSHPort  int       `json:"sshPort"`
	HostKey  string    `json:"hostKey"` // pinned, authorized_keys form
	Accel    string    `json:"accel"`
	Created  time.Time `json:"created"`
	VerifyOn string    `json:"verify,omitempty"` // the spec's verify suite
	Ready    bool      `json:"ready"`            // SSH answered; false while booting

	dir string
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,40}$`)

// ValidName checks an instance name.
func ValidName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("invalid instance name %q: use lower-case letters, digits and dashes", name)
	}
	return nil
}

// Dir is the directory of the instance called name.
func Dir(name string) string { return filepath.Join(paths.Instances(), name) }

// Dir is where the instance's files are.
func (i *Instance) Dir() string { return i.dir }

// KeyPath is the client's private key.
func (i *Instance) KeyPath() string { return filepath.Join(i.dir, "id_ed25519") }

// ConsolePath is the serial console log.
func (i *Instance) ConsolePath() string { return filepath.Join(i.dir, "console.log") }

// SSHConfigPath is an ssh_config for plain `ssh -F`.
func (i *Instance) SSHConfigPath() string { return filepath.Join(i.dir, "ssh_config") }

// Load reads the record of the instance called name.
func Load(name string) (*Instance, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	dir := Dir(name)
	data, err := os.ReadFile(filepath.Join(dir, "instance.json"))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("no instance %q (start one with `labforge up`)", name)
	}
	if err != nil {
		return nil, err
	}
	var i Instance
	if err := json.Unmarshal(data, &i); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "instance.json"), err)
	}
	i.dir = dir
	return &i, nil
}

func (i *Instance) save() error {
	data, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(i.dir, "instance.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(i.dir, "instance.json"))
}

// SSHConfig is how to reach the guest with the pinned host key.
func (i *Instance) SSHConfig() (sshx.Config, error) {
	signer, err := sshx.LoadSigner(i.KeyPath())
	if err != nil {
		return sshx.Config{}, err
	}
	hk, err := sshx.ParsePublicKey(i.HostKey)
	if err != nil {
		return sshx.Config{}, fmt.Errorf("instance %s: pinned host key: %w", i.Name, err)
	}
	return sshx.Config{Addr: fmt.Sprintf("127.0.0.1:%d", i.SSHPort), User: i.User, Signer: signer, HostKey: hk}, nil
}

// writeSSHFiles writes known_hosts and ssh_config so the system ssh client
// reaches the guest with the same pinning as labforge.
func (i *Instance) writeSSHFiles() error {
	hk, err := sshx.ParsePublicKey(i.HostKey)
	if err != nil {
		return err
	}
	known := fmt.Sprintf("[127.0.0.1]:%d %s", i.SSHPort, string(ssh.MarshalAuthorizedKey(hk)))
	if err := os.WriteFile(filepath.Join(i.dir, "known_hosts"), []byte(known), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# Written by labforge: ssh -F %s %s
Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  HostKeyAlgorithms ssh-ed25519
  LogLevel ERROR
`, i.SSHConfigPath(), i.Domain, i.Domain, i.SSHPort, i.User, i.KeyPath(), filepath.Join(i.dir, "known_hosts"))
	return os.WriteFile(i.SSHConfigPath(), []byte(cfg), 0o644)
}

// List names the instances that have a record.
func List() ([]string, error) {
	entries, err := os.ReadDir(paths.Instances())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(paths.Instances(), e.Name(), "instance.json")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out, nil
}
