package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/provision"
)

// Snapshot is a saved, verified guest that new instances are restored
// from (internal/warm makes them). Its files are only read.
type Snapshot struct {
	ID         string // names it in records and messages
	Save       string // libvirt's save file: domain XML, then memory
	Disk       string // the overlay the saved guest ran on, frozen
	NVRAM      string // its UEFI variable store
	User       string
	UserKey    string // the saved guest's client key (a file); removed from each clone
	HostKey    string // the saved guest's host key, authorized_keys form; replaced in each clone
	InstanceID string // cloud-init's instance id of the saved guest
	Accel      virt.Accel
}

// RestoreOptions say which snapshot to restore as which instance.
type RestoreOptions struct {
	Name    string
	Spec    string
	Image   string // the built image under the snapshot's disk, recorded
	Verify  string
	SSHPort int           // 0 = a free one
	Timeout time.Duration // restore to SSH with the new identity
	From    Snapshot
}

// Restore brings up a new instance from a snapshot: its own overlay on
// the frozen disk, NVRAM copy, seed and SSH port, restored running, then
// given its own identity (Identity) before anyone else logs in. When it
// fails or ctx is cancelled, nothing is left, as with Up.
func Restore(ctx context.Context, c *virt.Conn, o RestoreOptions) (inst *Instance, client *sshx.Client, err error) {
	if c.Remote() {
		return nil, nil, errors.New("restore: warm states are restored on this machine only")
	}
	unlock, err := claim(c, o.Name, o.SSHPort)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	dir := Dir(o.Name)
	if err := PrivateDir(dir); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			if rerr := removeAll(c, o.Name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", rerr))
			}
		}
	}()
	dom := DomainPrefix + o.Name
	inst = &Instance{Name: o.Name, Domain: dom, Spec: o.Spec, Image: o.Image, User: o.From.User,
		Accel: string(o.From.Accel), Created: time.Now().UTC(), VerifyOn: o.Verify,
		InstanceID: o.From.InstanceID, Restored: o.From.ID, dir: dir}
	id, err := newIdentity(o.Name, o.From.User, dom)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(inst.KeyPath(), id.userKey.PrivatePEM, 0o600); err != nil {
		return nil, nil, err
	}
	inst.HostKey = id.hostKey.AuthorizedKey
	// The seed says what the guest now is, under the saved guest's
	// instance id: a reboot finds the same instance and keeps its keys.
	seed := provision.Seed{InstanceID: o.From.InstanceID, Hostname: o.Name, User: o.From.User,
		AuthorizedKey: id.userKey.AuthorizedKey, HostKeyPrivate: string(id.hostKey.PrivatePEM), HostKeyPublic: id.hostKey.AuthorizedKey}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := seed.WriteISO(seedPath); err != nil {
		return nil, nil, err
	}
	overlay, nvram := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "nvram.fd")
	if err := runx.Run(ctx, nil, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", o.From.Disk, overlay); err != nil {
		return nil, nil, fmt.Errorf("overlay: %w", err)
	}
	if err := os.Chmod(overlay, 0o600); err != nil {
		return nil, nil, err
	}
	if err := fsx.CopyFile(o.From.NVRAM, nvram, 0o600); err != nil {
		return nil, nil, fmt.Errorf("nvram: %w", err)
	}
	img, err := virt.ReadSaveImage(o.From.Save)
	if err != nil {
		return nil, nil, err
	}
	uid := uuid.NewString()
	clone := filepath.Join(dir, "restore.sav")
	start := func(port int) error {
		inst.SSHPort = port
		if err := inst.save(); err != nil {
			return err
		}
		xml, err := virt.CloneXML(img.XML, virt.CloneSpec{Name: dom, UUID: uid,
			Description: "labforge instance " + o.Name + " of " + o.Spec + ", restored from " + o.From.ID,
			Disk:        overlay, Seed: seedPath, NVRAM: nvram, Console: inst.ConsolePath(), SSHPort: port})
		if err != nil {
			return err
		}
		os.Remove(clone)
		// A FIFO, not a copy: libvirt reads the state's memory through it
		// once, and nothing of it is written again.
		done, err := virt.ServeSaveClone(ctx, o.From.Save, img, xml, clone)
		if err != nil {
			return err
		}
		rerr := c.Restore(clone, xml)
		// QEMU stops reading at the stream's end marker, before the
		// description QEMU appends: the writer's error matters only when
		// the restore failed too, and then the restore's says more.
		_ = done()
		return rerr
	}
	if _, err := startOnPort(o.SSHPort, c.FreePort, start, func() error { return c.Remove(dom) }); err != nil {
		return nil, nil, err
	}
	// The guest answers at once as the saved one did: log in with the
	// saved keys, then make it this host.
	saved, err := savedConfig(inst, o.From)
	if err != nil {
		return nil, nil, err
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if err := id.apply(ctx, c, inst, saved, timeout); err != nil {
		return nil, nil, err
	}
	if client, err = WaitSSH(ctx, c, inst, timeout); err != nil {
		return nil, nil, fmt.Errorf("%s after its new identity: %w", dom, err)
	}
	if err := inst.ready(); err != nil {
		client.Close()
		return nil, nil, err
	}
	return inst, client, nil
}

// savedConfig reaches the restored guest as the saved one: its client
// key and host key, on the clone's port.
func savedConfig(inst *Instance, s Snapshot) (sshx.Config, error) {
	signer, err := sshx.LoadSigner(s.UserKey)
	if err != nil {
		return sshx.Config{}, err
	}
	hk, err := sshx.ParsePublicKey(s.HostKey)
	if err != nil {
		return sshx.Config{}, fmt.Errorf("warm state %s: host key: %w", s.ID, err)
	}
	return sshx.Config{Addr: fmt.Sprintf("127.0.0.1:%d", inst.SSHPort), User: s.User, Signer: signer, HostKey: hk}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
