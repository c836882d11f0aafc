package virt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func TestParseURI(t *testing.T) {
	for _, uri := range []string{"", "qemu:///system", "qemu:///session"} {
		tg, err := ParseURI(uri)
		if err != nil || tg.Hop != nil || tg.Label() != "local" {
			t.Errorf("%q: %+v, %v; want this machine", uri, tg, err)
		}
	}
	// hv2.sh's URI: command= and no_tty= belong to libvirt's ssh program.
	tg, err := ParseURI("qemu+ssh://root@10.231.0.2/system?keyfile=/d/id_ed25519&known_hosts=/d/known_hosts&command=/d/ssh&no_tty=1")
	if err != nil {
		t.Fatal(err)
	}
	if h := tg.Hop; h == nil || h.Addr != "10.231.0.2:22" || h.User != "root" || h.KeyFile != "/d/id_ed25519" || h.KnownHosts != "/d/known_hosts" {
		t.Fatalf("hop %+v", tg.Hop)
	}
	if tg.Label() != "root@10.231.0.2:22" {
		t.Errorf("label %q", tg.Label())
	}
	tg, err = ParseURI("qemu+ssh://lab@[fd00::2]:2222/system?socket=/run/libvirt/virtqemud-sock")
	if err != nil || tg.Hop.Addr != "[fd00::2]:2222" || tg.Hop.User != "lab" || tg.Socket != "/run/libvirt/virtqemud-sock" {
		t.Fatalf("%+v %v", tg, err)
	}
}

func TestParseURIRefuses(t *testing.T) {
	for uri, want := range map[string]string{
		"qemu+ssh://h/system?known_hosts_verify=ignore":      "always checks the host key",
		"qemu+ssh://h/system?known_hosts_verify=auto":        "always checks the host key",
		"qemu+ssh://h/system?no_verify=1":                    "always checks the host key",
		"qemu+ssh://h/session":                               "system daemon",
		"qemu+ssh:///system":                                 "no host",
		"qemu+tcp://h/system":                                "qemu+ssh://",
		"xen:///system":                                      "qemu+ssh://",
		"qemu+ssh://h/system?keyfle=/k":                      `unknown parameter "keyfle"`,
		"qemu+ssh://h/system?keyfile=/k%0AProxyCommand%20sh": "keyfile may not hold spaces or control characters",
		"qemu+ssh://u%0Ax@h/system":                          "user and host may not hold",
	} {
		if _, err := ParseURI(uri); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", uri, err, want)
		}
	}
}

func TestVolumeXML(t *testing.T) {
	x, err := VolumeXML("labforge-c-s01.qcow2", "qcow2", 8<<30, PoolDir+"/golden-ab.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	var v libvirtxml.StorageVolume
	if err := v.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if v.Name != "labforge-c-s01.qcow2" || v.Capacity.Value != 8<<30 || v.Capacity.Unit != "bytes" || v.Target.Format.Type != "qcow2" {
		t.Fatalf("volume:\n%s", x)
	}
	if v.BackingStore == nil || v.BackingStore.Path != PoolDir+"/golden-ab.qcow2" || v.BackingStore.Format.Type != "qcow2" {
		t.Fatalf("overlay without its qcow2 backing volume:\n%s", x)
	}
	x, err = VolumeXML("seed.iso", "raw", 1<<20, "")
	if err != nil || strings.Contains(x, "backingStore") || !strings.Contains(x, `<format type="raw">`) {
		t.Fatalf("a plain volume: %v\n%s", err, x)
	}
	p, err := PoolXML()
	if err != nil || !strings.Contains(p, `<pool type="dir">`) || !strings.Contains(p, "<path>"+PoolDir+"</path>") {
		t.Fatalf("pool: %v\n%s", err, p)
	}
}

// A remote domain leaves the firmware to the hypervisor's libvirt, without
// Secure Boot; its disks are the pool's volumes.
func TestDomainXMLRemoteFirmware(t *testing.T) {
	x, err := DomainXML(MachineSpec{Name: "labforge-t", Accel: TCG, MemoryMiB: 512, CPUs: 1,
		Disk: PoolDir + "/labforge-t.qcow2", Seed: PoolDir + "/labforge-t-seed.iso", Console: PoolDir + "/labforge-t-console.log", SSHPort: 2222})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`firmware="efi"`, `<feature enabled="no" name="secure-boot">`, `<feature enabled="no" name="enrolled-keys">`,
		`<source file="` + PoolDir + `/labforge-t.qcow2">`, "hostfwd=tcp:127.0.0.1:2222-:22"} {
		if !strings.Contains(x, want) {
			t.Errorf("no %s in:\n%s", want, x)
		}
	}
	if strings.Contains(x, "<loader") || strings.Contains(x, "<nvram") {
		t.Errorf("a remote domain names this machine's firmware:\n%s", x)
	}
}

func TestQcow2Info(t *testing.T) {
	dir := t.TempDir()
	hdr := func(backing uint64, size uint64) string {
		b := make([]byte, 72)
		copy(b, "QFI\xfb\x00\x00\x00\x03")
		for i := 0; i < 8; i++ {
			b[8+i] = byte(backing >> (56 - 8*i))
			b[24+i] = byte(size >> (56 - 8*i))
		}
		p := filepath.Join(dir, "d.qcow2")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if size, backed, err := Qcow2Info(hdr(0, 8<<30)); err != nil || size != 8<<30 || backed {
		t.Errorf("whole disk: %d %v %v", size, backed, err)
	}
	if _, backed, err := Qcow2Info(hdr(0x200, 8<<30)); err != nil || !backed {
		t.Errorf("layer: %v %v", backed, err)
	}
	os.WriteFile(filepath.Join(dir, "raw"), make([]byte, 64), 0o644)
	if _, _, err := Qcow2Info(filepath.Join(dir, "raw")); err == nil {
		t.Error("a raw file passed as qcow2")
	}
}
