// Package provision makes what a guest is given at first boot: the
// cloud-init NoCloud seed with its identity, user and keys.
package provision

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kdomanski/iso9660"
	"go.yaml.in/yaml/v3"
)

// Seed is one guest's first-boot identity.
type Seed struct {
	InstanceID    string
	Hostname      string
	User          string
	AuthorizedKey string // the user's key, as an authorized_keys line
	// The guest's Ed25519 host key, injected so the client can pin it
	// before the guest has ever booted.
	HostKeyPrivate string
	HostKeyPublic  string
}

type cloudUser struct {
	Name              string   `yaml:"name"`
	Gecos             string   `yaml:"gecos"`
	Shell             string   `yaml:"shell"`
	Sudo              string   `yaml:"sudo"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
}

type userData struct {
	Hostname       string            `yaml:"hostname"`
	PreserveHost   bool              `yaml:"preserve_hostname"`
	Users          []cloudUser       `yaml:"users"`
	SSHPwauth      bool              `yaml:"ssh_pwauth"`
	DisableRoot    bool              `yaml:"disable_root"`
	SSHDeleteKeys  bool              `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes []string          `yaml:"ssh_genkeytypes"`
	SSHKeys        map[string]string `yaml:"ssh_keys"`
}

// UserData renders the #cloud-config document. It is marshalled, not
// templated, so no value can break out of its field.
func (s Seed) UserData() ([]byte, error) {
	ud := userData{
		Hostname: s.Hostname,
		Users: []cloudUser{{
			Name: s.User, Gecos: "lab student", Shell: "/bin/bash",
			Sudo: "ALL=(ALL) NOPASSWD:ALL", LockPasswd: true,
			SSHAuthorizedKeys: []string{s.AuthorizedKey},
		}},
		DisableRoot:   true,
		SSHDeleteKeys: true,
		// Generating RSA keys under emulation costs seconds; the pinned
		// Ed25519 key, given below, is the only one the client accepts.
		SSHGenKeyTypes: []string{"ed25519"},
		SSHKeys: map[string]string{
			"ed25519_private": s.HostKeyPrivate,
			"ed25519_public":  s.HostKeyPublic,
		},
	}
	b, err := yaml.Marshal(ud)
	if err != nil {
		return nil, err
	}
	return append([]byte("#cloud-config\n"), b...), nil
}

// MetaData renders the NoCloud meta-data.
func (s Seed) MetaData() ([]byte, error) {
	return yaml.Marshal(map[string]string{"instance-id": s.InstanceID, "local-hostname": s.Hostname})
}

// WriteISO writes the seed as an ISO 9660 image labelled "cidata", which
// cloud-init's NoCloud source looks for. The file appears whole or not at all.
func (s Seed) WriteISO(path string) error {
	if s.InstanceID == "" || s.Hostname == "" || s.User == "" || s.AuthorizedKey == "" {
		return fmt.Errorf("seed: instance id, hostname, user and key are required")
	}
	ud, err := s.UserData()
	if err != nil {
		return err
	}
	md, err := s.MetaData()
	if err != nil {
		return err
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer w.Cleanup()
	for name, data := range map[string][]byte{"user-data": ud, "meta-data": md} {
		if err := w.AddFile(bytes.NewReader(data), name); err != nil {
			return fmt.Errorf("seed: add %s: %w", name, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seed-*.iso")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := w.WriteTo(tmp, "cidata"); err != nil {
		tmp.Close()
		return fmt.Errorf("seed: write %s: %w", path, err)
	}
	// The seed carries the guest's SSH host key: root's and the
	// hypervisor's alone (libvirt hands it to QEMU while the guest runs).
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
