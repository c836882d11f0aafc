package warm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

// MakeOptions say what to boot, settle and save.
type MakeOptions struct {
	Machine
	Inputs      map[string]string
	SpecPath    string
	User        string
	Suite       *verify.Suite // must pass before the save; nil: a finished boot is enough
	BootTimeout time.Duration
	// Step is told each step as it starts ("boot", "verify", "save").
	Step func(string)
}

// GoldenPrefix starts the instance name of the guest a state is made from.
const GoldenPrefix = instance.GoldenPrefix

func goldenLock(name string) string { return filepath.Join(Root(), "."+name+".lock") }

// Making says whether a labforge is making a state from the guest called
// name now (`down --all` leaves that guest to it).
func Making(name string) bool {
	if !strings.HasPrefix(name, GoldenPrefix) {
		return false
	}
	unlock, err := fsx.Lock(goldenLock(name), false)
	if err != nil {
		return errors.Is(err, fsx.ErrLocked)
	}
	unlock()
	return false
}

// Make boots the image once, waits until its suite passes, quiesces the
// guest and saves it as the state for o.Inputs. Two labforges making the
// same state take turns: the second finds the first's. On failure or
// Ctrl-C nothing is left: no golden guest, no partial state.
func Make(ctx context.Context, c *virt.Conn, o MakeOptions) (snap *instance.Snapshot, err error) {
	key := Key(o.Inputs)
	if err := os.MkdirAll(Root(), 0o755); err != nil {
		return nil, err
	}
	name := GoldenPrefix + key[:12]
	step := func(s string) {
		if o.Step != nil {
			o.Step(s)
		}
	}
	unlock, err := fsx.LockContext(ctx, goldenLock(name), func() { step("waiting for the labforge making it") })
	if err != nil {
		return nil, fmt.Errorf("warm state: %w", err)
	}
	defer unlock()
	// The labforge we waited for may have made it.
	if dir := current(o.Spec, key); dir != "" {
		if meta, err := readMeta(dir); err == nil {
			return meta.snapshot(dir), nil
		}
	}
	work, err := os.MkdirTemp(Root(), ".work-"+o.Spec+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work) // renamed away on success
	// The state holds the saved host's secrets; QEMU (as its own user)
	// opens the disk through this directory.
	if err := instance.PrivateDir(work); err != nil {
		return nil, err
	}
	times := map[string]string{}
	t := time.Now()
	lap := func(name string) { times[name] = time.Since(t).Round(100 * time.Millisecond).String(); t = time.Now() }

	step("boot")
	inst, client, err := instance.Up(ctx, c, instance.UpOptions{Name: name, Hostname: o.Spec, Spec: o.SpecPath,
		Image: o.Image, Overlay: filepath.Join(work, diskFile), User: o.User, MemoryMiB: o.MemoryMiB, CPUs: o.CPUs,
		Accel: o.Accel, BootTimeout: o.BootTimeout})
	if err != nil {
		return nil, fmt.Errorf("warm state: boot: %w", err)
	}
	defer func() {
		if client != nil {
			client.Close()
		}
		if derr := instance.Down(c, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("warm state: remove the golden guest: %w", derr))
		}
	}()
	lap("boot")
	run := instance.RootRunner{Client: client}
	step("verify")
	if o.Suite != nil {
		rep := verify.Run(ctx, run, o.Suite, verify.Options{Batch: true})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if rep.Err() != nil {
			return nil, fmt.Errorf("warm state: the image's host fails its suite (%v): nothing saved", rep.Err())
		}
	}
	lap("verify")
	step("save")
	meta := &Meta{Key: key, Spec: o.Spec, Image: o.Image, Inputs: o.Inputs, User: o.User, HostKey: inst.HostKey,
		InstanceID: inst.InstanceID, Accel: string(o.Accel), Created: time.Now().UTC(), Times: times}
	if meta.CertExpiry, err = certExpiry(ctx, run); err != nil {
		return nil, err
	}
	if err := quiesce(ctx, run); err != nil {
		return nil, err
	}
	// The session ends before the save: a restored guest must not hold a
	// connection slirp no longer knows.
	client.Close()
	client = nil
	if err := c.Save(inst.Domain, filepath.Join(work, saveFile)); err != nil {
		return nil, fmt.Errorf("warm state: %w", err)
	}
	if err := fsx.CopyFile(filepath.Join(inst.Dir(), "nvram.fd"), filepath.Join(work, nvramFile), 0o600); err != nil {
		return nil, err
	}
	if err := fsx.CopyFile(inst.KeyPath(), filepath.Join(work, keyFile), 0o600); err != nil {
		return nil, err
	}
	lap("save")
	meta.SHA256 = map[string]string{}
	for _, f := range []string{saveFile, diskFile, nvramFile, keyFile} {
		p := filepath.Join(work, f)
		// Frozen: every clone's overlay reads it, nothing writes it.
		if err := os.Chmod(p, 0o400); err != nil {
			return nil, err
		}
		if meta.SHA256[f], err = fsx.SHA256(p); err != nil {
			return nil, err
		}
	}
	if err := writeMeta(work, meta); err != nil {
		return nil, err
	}
	dir := newDir(o.Spec, key, meta.Created)
	if err := os.Rename(work, dir); err != nil {
		return nil, err
	}
	return meta.snapshot(dir), nil
}

// quiesce readies a settled guest for its save: timers stopped (a
// restore's clock jump would fire them all at once; Restore starts them
// again), caches dropped and free memory zeroed, so that the state file
// holds little more than the memory in use (QEMU writes a zero page as a
// flag). The zeroing process is the first the OOM killer would take.
func quiesce(ctx context.Context, run instance.RootRunner) error {
	script := strings.Join([]string{
		"systemctl is-system-running --wait >/dev/null 2>&1 || true",
		"systemctl stop $(systemctl list-units --type=timer --state=active --plain --no-legend | awk '{print $1}')",
		"sync; echo 3 > /proc/sys/vm/drop_caches",
		"free=$(awk '/^MemFree:/ {print int($2 / 1024)}' /proc/meminfo)",
		"n=$((free - 192))",
		`[ "$n" -gt 0 ] && sh -c 'echo 1000 > /proc/self/oom_score_adj; exec dd if=/dev/zero of=/dev/null bs=${0}M count=1 2>/dev/null' "$n" || true`,
		"sync; echo 3 > /proc/sys/vm/drop_caches",
	}, "\n")
	res, err := run.Run(ctx, script)
	if err != nil {
		return fmt.Errorf("warm state: quiesce: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("warm state: quiesce: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}

// certExpiry reads the earliest expiry of the certificates a lab's
// services use (a cluster's, the kubelet's); zero when there are none.
func certExpiry(ctx context.Context, run instance.RootRunner) (time.Time, error) {
	res, err := run.Run(ctx, `command -v openssl >/dev/null || exit 0
find /etc/kubernetes /var/lib/kubelet/pki -name '*.crt' 2>/dev/null | while read -r f; do
  openssl x509 -noout -enddate -in "$f" 2>/dev/null | sed 's/^notAfter=//'
done`)
	if err != nil {
		return time.Time{}, fmt.Errorf("warm state: certificates: %w", err)
	}
	var first time.Time
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if line == "" {
			continue
		}
		t, err := time.Parse("Jan 2 15:04:05 2006 MST", strings.Join(strings.Fields(line), " "))
		if err != nil {
			return time.Time{}, fmt.Errorf("warm state: certificate expiry %q: %w", line, err)
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, nil
}

func writeMeta(dir string, m *Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, metaFile), data, 0o600)
}

// Steps shows long work as named steps: fn runs as the step, telling its
// phases as they start; what it returns is the step's note.
type Steps func(step string, fn func(phase func(string)) (string, error)) error

// Ensure is what `up` and `class create` do first: the image's warm state,
// checked, or made now when there never was one (made says so). With
// none to use it says why in one line; only Ctrl-C is an error.
func Ensure(ctx context.Context, c *virt.Conn, o MakeOptions, steps Steps) (snap *instance.Snapshot, why string, made bool, err error) {
	if o.ImageSum == "" {
		return nil, "the image's record has no sha256 to key a warm state by", false, nil
	}
	if o.Inputs, err = Inputs(ctx, c, o.Machine); err != nil {
		return nil, err.Error(), false, nil
	}
	var findErr error
	_ = steps("warm state", func(func(string)) (string, error) {
		snap, _, findErr = Find(o.Machine, o.Inputs, time.Now())
		if findErr != nil {
			return "none to use", nil
		}
		return snap.ID + ", sha256 checked", nil
	})
	if findErr == nil {
		return snap, "", false, nil
	}
	if !errors.Is(findErr, ErrNone) {
		return nil, findErr.Error(), false, nil
	}
	err = steps("make the warm state (once for this image: boot, verify, save)", func(phase func(string)) (string, error) {
		o.Step = phase
		var err error
		if snap, err = Make(ctx, c, o); err != nil {
			return "", err
		}
		return snap.ID, nil
	})
	if ctx.Err() != nil {
		return nil, "", false, ctx.Err()
	}
	if err != nil {
		return nil, err.Error(), false, nil
	}
	return snap, "", true, nil
}
