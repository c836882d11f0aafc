// Package warm makes and finds warm states: a verified lab host's memory
// saved with the disk it ran on, so that later hosts of the same image are
// restored in seconds instead of booted (instance.Restore).
//
// A state lives in the cache as warm/SPEC-KEY/: state.sav (libvirt's save
// file), disk.qcow2 (the overlay the saved guest ran on, frozen), nvram.fd,
// id_ed25519 (the saved guest's client key, removed from every clone) and
// meta.json. KEY covers everything a restore needs to match: the image,
// QEMU, libvirt, the firmware, the accelerator and the domain's devices.
package warm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/virt"
)

// Files of a state, by what they are.
const (
	saveFile  = "state.sav"
	diskFile  = "disk.qcow2"
	nvramFile = "nvram.fd"
	keyFile   = "id_ed25519"
	metaFile  = "meta.json"
)

// ExpiryMargin is how close to its certificates' expiry a state is no
// longer restored: a host restored from it would stop working in class.
const ExpiryMargin = 7 * 24 * time.Hour

// Meta is a state's own account, kept as meta.json.
type Meta struct {
	Key    string            `json:"key"`
	Spec   string            `json:"spec"` // the spec's name
	Image  string            `json:"image"`
	Inputs map[string]string `json:"inputs"`
	// The saved guest, as instance.Restore needs it.
	User       string    `json:"user"`
	HostKey    string    `json:"hostKey"`
	InstanceID string    `json:"instanceId"`
	Accel      string    `json:"accel"`
	Created    time.Time `json:"created"`
	// CertExpiry is the earliest expiry of a certificate on the saved
	// guest (its cluster's), zero when it has none.
	CertExpiry time.Time         `json:"certExpiry,omitzero"`
	SHA256     map[string]string `json:"sha256"` // file name → digest, checked before each restore
	// How long making it took, by step, for the record.
	Times map[string]string `json:"times,omitempty"`
}

// Root is the directory of every state.
func Root() string { return filepath.Join(paths.Cache(), "warm") }

// Machine is what the hosts restored from a state run as.
type Machine struct {
	Spec      string // the spec's name
	Image     string // the built image
	ImageSum  string // its bytes' digest (builder.Result.SHA256: base disk and layers)
	Accel     virt.Accel
	MemoryMiB uint
	CPUs      uint
}

// Inputs are what a state must match to be restored here: the image, the
// host's QEMU, libvirt and firmware, and the domain labforge would define
// for the machine (machine type, CPU model, memory, vCPUs, every device).
func Inputs(ctx context.Context, c *virt.Conn, m Machine) (map[string]string, error) {
	in := map[string]string{"image": m.ImageSum, "accel": string(m.Accel)}
	v, err := qemuVersion(ctx, c)
	if err != nil {
		return nil, err
	}
	in["qemu"] = v
	in["libvirt"] = libvirtVersion(ctx, c)
	fw, err := virt.FindFirmware()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, f := range []string{fw.Code, fw.Vars} {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		h.Write(data)
	}
	in["firmware"] = hex.EncodeToString(h.Sum(nil))[:16]
	// Placeholder paths: only what the guest sees counts.
	xml, err := virt.DomainXML(virt.MachineSpec{Name: "x", Accel: m.Accel, MemoryMiB: m.MemoryMiB, CPUs: m.CPUs,
		Disk: "/d", Seed: "/s", Firmware: fw, NVRAM: "/n", Console: "/c", SSHPort: 22})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(xml))
	in["domain"] = hex.EncodeToString(sum[:])[:16]
	in["machine"] = fmt.Sprintf("q35, %d MiB, %d vCPUs", m.MemoryMiB, m.CPUs)
	return in, nil
}

// qemuVersion is the emulator's own account of its version, which names
// the distribution's build (Debian's qemu-system-x86_64; RHEL's
// qemu-kvm), else the hypervisor version libvirt reports.
func qemuVersion(ctx context.Context, c *virt.Conn) (string, error) {
	for _, bin := range []string{"qemu-system-x86_64", "/usr/libexec/qemu-kvm"} {
		if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
			return strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "QEMU emulator version "), nil
		}
	}
	v, err := c.ConnectGetVersion()
	if err != nil {
		return "", fmt.Errorf("qemu version: %w", err)
	}
	return dotted(v), nil
}

// dotted renders libvirt's version numbers (major*1e6 + minor*1e3 + micro).
func dotted(v uint64) string { return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000) }

// libvirtVersion is the package's version where dpkg or rpm knows it
// (a distribution's fix changes it), else the library's.
func libvirtVersion(ctx context.Context, c *virt.Conn) string {
	for _, q := range [][]string{{"dpkg-query", "-W", "-f=${Version}", "libvirt-daemon"}, {"rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", "libvirt-daemon"}} {
		if out, err := exec.CommandContext(ctx, q[0], q[1:]...).Output(); err == nil && len(out) > 0 {
			return strings.TrimSpace(string(out))
		}
	}
	v, err := c.ConnectGetLibVersion()
	if err != nil {
		return "unknown"
	}
	return dotted(v)
}

// Key names the state for inputs.
func Key(inputs map[string]string) string {
	data, _ := json.Marshal(inputs) // map keys marshal sorted
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// current is the newest usable state of spec for key, or "". Each state
// made gets a directory of its own (SPEC-KEY-TIME): a state retired while
// a restored host still runs on its disk keeps its path, and a new one of
// the same key goes beside it.
func current(spec, key string) string {
	dirs, _ := filepath.Glob(filepath.Join(Root(), spec+"-"+key+"-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, metaFile)); err == nil {
			return d
		}
	}
	return ""
}

// newDir is where a state of spec for key made now goes.
func newDir(spec, key string, now time.Time) string {
	return filepath.Join(Root(), fmt.Sprintf("%s-%s-%d", spec, key, now.UnixNano()))
}

// ErrNone is returned by Find when no state of the spec exists at all:
// the caller may make one.
var ErrNone = errors.New("no warm state")

// Find returns the state of m matching inputs, checked. When there is none
// it says why in one line: ErrNone when there never was one; otherwise
// what differs, or what is wrong with the one found (which is removed, so
// that the next host makes a new one).
func Find(m Machine, inputs map[string]string, now time.Time) (*instance.Snapshot, *Meta, error) {
	dir := current(m.Spec, Key(inputs))
	if dir == "" {
		return nil, nil, mismatch(m, inputs)
	}
	meta, err := readMeta(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := check(dir, meta, now); err != nil {
		return nil, nil, err
	}
	return meta.snapshot(dir), meta, nil
}

// Get returns the state called id (a class keeps the one it was made
// from), checked as Find checks it.
func Get(id string, now time.Time) (*instance.Snapshot, error) {
	if id == "" || strings.ContainsAny(id, "/") || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("warm state %q: not a state's name", id)
	}
	dir := filepath.Join(Root(), id)
	meta, err := readMeta(dir)
	if err != nil {
		return nil, fmt.Errorf("warm state %s: %w", id, err)
	}
	if err := check(dir, meta, now); err != nil {
		return nil, err
	}
	return meta.snapshot(dir), nil
}

// check refuses (and retires) a state near its certificates' expiry or
// whose files do not match their sha256.
func check(dir string, meta *Meta, now time.Time) error {
	if !meta.CertExpiry.IsZero() && now.Add(ExpiryMargin).After(meta.CertExpiry) {
		removeState(dir)
		return fmt.Errorf("warm state %s: its certificates expire %s, within %s: removed", filepath.Base(dir), meta.CertExpiry.Format(time.DateOnly), ExpiryMargin)
	}
	for _, f := range []string{saveFile, diskFile, nvramFile, keyFile} {
		got, err := fsx.SHA256(filepath.Join(dir, f))
		if err != nil || got != meta.SHA256[f] {
			removeState(dir)
			if err != nil {
				return fmt.Errorf("warm state %s: %w: removed", filepath.Base(dir), err)
			}
			return fmt.Errorf("warm state %s: %s does not match its sha256 (damaged): removed", filepath.Base(dir), f)
		}
	}
	return nil
}

// mismatch explains why no state of m's spec matches inputs: ErrNone, or
// the first input that differs from a state of the same image made on
// this host before (that state can never be restored here again, and is
// removed). A state made from an earlier build at the image's path (a
// forced rebuild writes new bytes there) is removed too; states of other
// images are theirs, pruned with them.
func mismatch(m Machine, inputs map[string]string) error {
	dirs, _ := filepath.Glob(filepath.Join(Root(), m.Spec+"-*"))
	for _, d := range dirs {
		meta, err := readMeta(d)
		if err != nil || meta.Spec != m.Spec {
			continue
		}
		if meta.Inputs["image"] != inputs["image"] {
			if meta.Image == m.Image {
				removeState(d)
			}
			continue
		}
		names := make([]string, 0, len(inputs))
		for k := range inputs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if meta.Inputs[k] != inputs[k] {
				removeState(d)
				return fmt.Errorf("warm state made with %s %s, this host has %s: removed", k, meta.Inputs[k], inputs[k])
			}
		}
	}
	return ErrNone
}

func (m *Meta) snapshot(dir string) *instance.Snapshot {
	return &instance.Snapshot{ID: filepath.Base(dir), Save: filepath.Join(dir, saveFile), Disk: filepath.Join(dir, diskFile),
		NVRAM: filepath.Join(dir, nvramFile), User: m.User, UserKey: filepath.Join(dir, keyFile), HostKey: m.HostKey,
		InstanceID: m.InstanceID, Accel: virt.Accel(m.Accel)}
}

func readMeta(dir string) (*Meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	return &m, nil
}

// removeState makes sure a state is never restored again. Its disk and
// NVRAM stay while a host restored from it exists: they are that host's
// backing disk (a student's work sits on it); `cache prune` removes them
// once no host uses them.
func removeState(dir string) {
	if InUse(filepath.Base(dir)) {
		for _, f := range []string{metaFile, saveFile, keyFile} {
			_ = os.Remove(filepath.Join(dir, f))
		}
		return
	}
	_ = os.RemoveAll(dir)
}

// InUse says whether a host restored from the state called id exists.
func InUse(id string) bool {
	names, _ := instance.List()
	for _, n := range names {
		if inst, err := instance.Load(n); err == nil && inst.Restored == id {
			return true
		}
	}
	return false
}
