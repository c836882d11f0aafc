// Package instance brings lab hosts up and down: a copy-on-write overlay
// of a built image, a seed with fresh keys, a libvirt domain, and the
// record of how to reach it.
package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
)

// ErrNoInstance is wrapped by the errors of calls on an instance that
// does not exist.
var ErrNoInstance = errors.New("no instance")

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
	// InstanceID is cloud-init's: a host restored from a warm state keeps
	// the saved host's, so that a reboot does not run first-boot modules again.
	InstanceID string `json:"instanceId,omitempty"`
	// Restored names the warm state the host was restored from ("" for a
	// cold boot).
	Restored string `json:"restored,omitempty"`
	// Host is the URI of the hypervisor the guest runs on when it is not
	// this machine: its disks are volumes there and its SSH forward is on
	// that host's loopback, reached through SSH to it.
	Host string `json:"host,omitempty"`

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

// Names that start with these prefixes are labforge's own guests: a
// build's (build-SPEC) and the one a warm state is made from (warm-KEY).
const (
	BuildGuestPrefix = "build-"
	GoldenPrefix     = "warm-"
)

// Reserved refuses a name (of a host, or a class whose students' hosts
// start with it) that labforge's own guests would share.
func Reserved(name string) error {
	for _, p := range []struct{ prefix, what string }{{BuildGuestPrefix, "build guests"}, {GoldenPrefix, "guests that warm states are made from"}} {
		if strings.HasPrefix(name+"-", p.prefix) {
			return fmt.Errorf("name %q: names starting with %q are labforge's %s", name, p.prefix, p.what)
		}
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
		return nil, fmt.Errorf("%w %q (start one with `labforge up`)", ErrNoInstance, name)
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
	jump, err := i.jump()
	if err != nil {
		return sshx.Config{}, err
	}
	return sshx.Config{Addr: fmt.Sprintf("127.0.0.1:%d", i.SSHPort), User: i.User, Signer: signer, HostKey: hk, Jump: jump}, nil
}

// Dial logs in to the running guest, giving up after timeout. The guest
// is up: a refused key stays refused, without retries.
func (i *Instance) Dial(ctx context.Context, timeout time.Duration) (*sshx.Client, error) {
	cfg, err := i.SSHConfig()
	if err != nil {
		return nil, err
	}
	cfg.AuthFinal = true
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := sshx.Dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", i.Name, err)
	}
	return c, nil
}

// jump is the hypervisor the guest is reached through; nil for this machine.
func (i *Instance) jump() (*sshx.Hop, error) {
	if i.Host == "" {
		return nil, nil
	}
	t, err := virt.ParseURI(i.Host)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", i.Name, err)
	}
	return t.Hop, nil
}

// SSHCommand is the system ssh command that logs in: through the
// hypervisor with -J when the guest runs on another machine.
func (i *Instance) SSHCommand() string {
	if j, _ := i.jump(); j != nil {
		return fmt.Sprintf("ssh -F %s -J %s %s", i.SSHConfigPath(), j, i.Domain)
	}
	return fmt.Sprintf("ssh -F %s %s", i.SSHConfigPath(), i.Domain)
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
	cfg := fmt.Sprintf(`# Written by labforge: %s
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
`, i.SSHCommand(), i.Domain, i.SSHPort, i.User, i.KeyPath(), filepath.Join(i.dir, "known_hosts"))
	if j, _ := i.jump(); j != nil {
		// The forward is on the hypervisor's loopback: jump through it,
		// with its own key and known hosts (ssh -J passes -F on).
		host, port, _ := net.SplitHostPort(j.Addr)
		cfg += fmt.Sprintf("  ProxyJump %s\n\nHost %s\n  Port %s\n  User %s\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n", j, host, port, j.User)
		if j.KeyFile != "" {
			cfg += fmt.Sprintf("  IdentityFile %s\n  IdentitiesOnly yes\n", j.KeyFile)
		}
		if j.KnownHosts != "" {
			cfg += fmt.Sprintf("  UserKnownHostsFile %s\n", j.KnownHosts)
		}
	}
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
