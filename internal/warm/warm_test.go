package warm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/fsx"
)

// fakeState writes a state for inputs the way Make leaves one.
func fakeState(t *testing.T, m Machine, inputs map[string]string, expiry time.Time) string {
	t.Helper()
	dir := newDir(m.Spec, Key(inputs), time.Now())
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	meta := &Meta{Key: Key(inputs), Spec: m.Spec, Image: m.Image, Inputs: inputs, User: "student", HostKey: "ssh-ed25519 AAAA",
		InstanceID: "iid", Accel: "tcg", CertExpiry: expiry, SHA256: map[string]string{}}
	for _, f := range []string{saveFile, diskFile, nvramFile, keyFile} {
		p := filepath.Join(dir, f)
		os.WriteFile(p, []byte("contents of "+f), 0o400)
		meta.SHA256[f], _ = fsx.SHA256(p)
	}
	if err := writeMeta(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFind(t *testing.T) {
	t.Setenv("LABFORGE_CACHE", t.TempDir())
	t.Setenv("LABFORGE_STATE", t.TempDir())
	m := Machine{Spec: "lab", Image: "/img.qcow2"}
	inputs := map[string]string{"image": "abc", "qemu": "7.2.21 (Debian 1:7.2+dfsg-7+deb12u1)", "accel": "tcg"}
	now := time.Now()

	if _, _, err := Find(m, inputs, now); !errors.Is(err, ErrNone) {
		t.Fatalf("empty cache: %v, want ErrNone", err)
	}
	dir := fakeState(t, m, inputs, now.Add(365*24*time.Hour))
	snap, _, err := Find(m, inputs, now)
	if err != nil || snap.Save != filepath.Join(dir, saveFile) || snap.User != "student" {
		t.Fatalf("Find = %+v, %v", snap, err)
	}

	// QEMU changed: the state says so in one line, and goes.
	newer := map[string]string{"image": "abc", "qemu": "7.2.22 (Debian 1:7.2+dfsg-7+deb12u2)", "accel": "tcg"}
	_, _, err = Find(m, newer, now)
	if err == nil || errors.Is(err, ErrNone) || !strings.Contains(err.Error(), "warm state made with qemu 7.2.21") ||
		!strings.Contains(err.Error(), "this host has 7.2.22") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("QEMU changed: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a state that can never be restored here stays")
	}

	// One byte flipped: refused by its sha256, removed.
	dir = fakeState(t, m, inputs, time.Time{})
	p := filepath.Join(dir, saveFile)
	os.Chmod(p, 0o600)
	data, _ := os.ReadFile(p)
	data[3] ^= 1
	os.WriteFile(p, data, 0o600)
	if _, _, err := Find(m, inputs, now); err == nil || !strings.Contains(err.Error(), "state.sav does not match its sha256") {
		t.Fatalf("damaged state: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a damaged state stays")
	}

	// Certificates expiring within the margin: not restored.
	fakeState(t, m, inputs, now.Add(3*24*time.Hour))
	if _, _, err := Find(m, inputs, now); err == nil || !strings.Contains(err.Error(), "certificates expire") {
		t.Fatalf("expiring state: %v", err)
	}
}

// A state that a restored host runs on keeps its disk when retired.
func TestRetiredStateKeepsDiskInUse(t *testing.T) {
	t.Setenv("LABFORGE_CACHE", t.TempDir())
	state := t.TempDir()
	t.Setenv("LABFORGE_STATE", state)
	m := Machine{Spec: "lab"}
	inputs := map[string]string{"image": "abc"}
	dir := fakeState(t, m, inputs, time.Time{})
	inst := filepath.Join(state, "instances", "alice")
	os.MkdirAll(inst, 0o700)
	os.WriteFile(filepath.Join(inst, "instance.json"), []byte(`{"name":"alice","restored":"`+filepath.Base(dir)+`"}`), 0o600)
	removeState(dir)
	if _, err := os.Stat(filepath.Join(dir, diskFile)); err != nil {
		t.Fatalf("retired state lost the disk a host runs on: %v", err)
	}
	for _, f := range []string{metaFile, saveFile, keyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("retired state keeps %s", f)
		}
	}
	// A new state of the same key goes beside it, and is the one found.
	fresh := fakeState(t, m, inputs, time.Time{})
	snap, _, err := Find(m, inputs, time.Now())
	if err != nil || fresh == dir || snap.Disk != filepath.Join(fresh, diskFile) {
		t.Fatalf("after a retired state: %+v, %v", snap, err)
	}
}

func TestKeyStable(t *testing.T) {
	a := Key(map[string]string{"a": "1", "b": "2"})
	if a != Key(map[string]string{"b": "2", "a": "1"}) || a == Key(map[string]string{"a": "1", "b": "3"}) || len(a) != 16 {
		t.Fatal("Key is not a stable digest of its inputs")
	}
}

// A new image's first host makes its own state; the old image's stays,
// unless the new image was written over the old one's file (a forced
// rebuild of the same spec key).
func TestNewImageIsNone(t *testing.T) {
	t.Setenv("LABFORGE_CACHE", t.TempDir())
	t.Setenv("LABFORGE_STATE", t.TempDir())
	m := Machine{Spec: "lab", Image: "/cache/images/lab-aaaa.qcow2"}
	other := fakeState(t, Machine{Spec: "lab", Image: "/cache/images/lab-bbbb.qcow2"}, map[string]string{"image": "old", "qemu": "1"}, time.Time{})
	if _, _, err := Find(m, map[string]string{"image": "new", "qemu": "1"}, time.Now()); !errors.Is(err, ErrNone) {
		t.Fatalf("new image: %v, want ErrNone", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("another image's state was removed")
	}
	overwritten := fakeState(t, m, map[string]string{"image": "before", "qemu": "1"}, time.Time{})
	if _, _, err := Find(m, map[string]string{"image": "after", "qemu": "1"}, time.Now()); !errors.Is(err, ErrNone) {
		t.Fatalf("rebuilt image: %v, want ErrNone", err)
	}
	if _, err := os.Stat(overwritten); !os.IsNotExist(err) {
		t.Fatal("the state of the bytes a forced rebuild replaced stays")
	}
}
