package virt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	// A longer XML than the golden's: the data length follows it.
	clone := *got
	clone.XML = "<domain>a clone with a longer XML than the golden's</domain>"
	p := filepath.Join(dir, "clone.sav")
	os.WriteFile(p, append(clone.header(), stream...), 0o600)
	c, err := ReadSaveImage(p)
	if err != nil || c.XML != clone.XML || c.Cookie != img.Cookie || c.StreamOffset != int64(len(clone.header())) {
		t.Fatalf("clone header %+v, %v", c, err)
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

// A clone's save file can flow through a FIFO: the reader gets the new
// header and the golden's stream; with no reader, done does not hang.
func TestServeSaveClone(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "golden.sav")
	img := &SaveImage{XML: "<domain>golden</domain>", Cookie: "<cookie/>", WasRunning: true}
	stream := bytes.Repeat([]byte("QEVM-stream-"), 1<<20)
	os.WriteFile(src, append(img.header(), stream...), 0o600)
	got, _ := ReadSaveImage(src)
	fifo := filepath.Join(dir, "clone.sav")
	done, err := ServeSaveClone(context.Background(), src, got, "<domain>clone</domain>", fifo)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("fifo: %v %v", st, err)
	}
	data, err := os.ReadFile(fifo)
	if err != nil {
		t.Fatal(err)
	}
	if err := done(); err != nil {
		t.Fatal(err)
	}
	clone := *got
	clone.XML = "<domain>clone</domain>"
	if !bytes.Equal(data, append(clone.header(), stream...)) {
		t.Fatal("the FIFO did not carry the clone's header and the golden's stream")
	}
	if _, err := os.Stat(fifo); !os.IsNotExist(err) {
		t.Fatal("the FIFO stays after done")
	}
	// Nobody reads (the restore failed before opening it).
	done, err = ServeSaveClone(context.Background(), src, got, "<domain>clone</domain>", fifo)
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- done() }()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done hung with no reader")
	}
}
