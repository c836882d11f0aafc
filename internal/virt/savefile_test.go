package virt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func TestSaveCloneKeepsStream(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "golden.sav")
	img := &SaveImage{XML: "<domain>golden</domain>", Cookie: "<cookie/>", WasRunning: true}
	stream := bytes.Repeat([]byte("QEVM-stream-"), 100000)
	if err := os.WriteFile(src, append(img.header(), stream...), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSaveImage(src)
	if err != nil {
		t.Fatal(err)
	}
	if got.XML != img.XML || got.Cookie != img.Cookie || !got.WasRunning || got.StreamOffset != int64(len(img.header())) {
		t.Fatalf("read back %+v", got)
	}
	dst := filepath.Join(dir, "clone.sav")
	clone := "<domain>a clone with a longer XML than the golden's</domain>"
	if err := WriteSaveClone(context.Background(), src, got, clone, dst); err != nil {
		t.Fatal(err)
	}
	c, err := ReadSaveImage(dst)
	if err != nil {
		t.Fatal(err)
	}
	if c.XML != clone || c.Cookie != img.Cookie {
		t.Fatalf("clone header %+v", c)
	}
	data, _ := os.ReadFile(dst)
	if !bytes.Equal(data[c.StreamOffset:], stream) {
		t.Fatal("clone's memory stream differs from the golden's")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Fatalf("clone file mode %v, want 0600", fi.Mode().Perm())
	}
	// An existing file is not overwritten, and a partial one not left.
	if err := WriteSaveClone(context.Background(), src, got, clone, dst); err == nil {
		t.Fatal("overwrote an existing clone file")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteSaveClone(ctx, src, got, clone, filepath.Join(dir, "c2.sav")); err == nil {
		t.Fatal("a cancelled copy succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "c2.sav")); !os.IsNotExist(err) {
		t.Fatal("a cancelled copy left its file")
	}
}

func TestReadSaveImageRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	img := &SaveImage{XML: "<domain/>"}
	for name, data := range map[string][]byte{
		"partial":   append([]byte("LibvirtQemudPart"), img.header()[16:]...),
		"short":     img.header()[:40],
		"not-saved": []byte(strings.Repeat("x", 200)),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o600)
		if _, err := ReadSaveImage(p); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err %v, want a one-line error", name, err)
		}
	}
}

func TestCloneXML(t *testing.T) {
	m := MachineSpec{Name: "labforge-warm", Accel: TCG, MemoryMiB: 2048, CPUs: 2, Disk: "/g/disk.qcow2",
		Seed: "/g/seed.iso", Firmware: Firmware{Code: "/fw/code.fd", Vars: "/fw/vars.fd"}, NVRAM: "/g/nvram.fd",
		Console: "/g/console.log", SSHPort: 4022}
	saved, err := DomainXML(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := CloneXML(saved, CloneSpec{Name: "labforge-alice", UUID: "2b6c3a2e-8c0b-4a39-9f43-0a8e2f1f7d11",
		Disk: "/a/disk.qcow2", Seed: "/a/seed.iso", NVRAM: "/a/nvram.fd", Console: "/a/console.log", SSHPort: 5022})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"/g/", "4022"} {
		if strings.Contains(out, gone) {
			t.Errorf("clone XML still has %q:\n%s", gone, out)
		}
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	if d.Name != "labforge-alice" || d.Devices.Disks[0].Source.File.File != "/a/disk.qcow2" || d.Devices.Disks[1].Source.File.File != "/a/seed.iso" ||
		d.OS.NVRam.NVRam != "/a/nvram.fd" || !strings.Contains(out, "hostfwd=tcp:127.0.0.1:5022-:22") || d.GenID == nil {
		t.Fatalf("clone XML:\n%s", out)
	}
	if _, err := CloneXML("<domain type='kvm'><name>x</name></domain>", CloneSpec{}); err == nil {
		t.Fatal("a foreign domain was cloned")
	}
}
