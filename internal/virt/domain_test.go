package virt

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

// The SSH forward listens on loopback only, never on every address.
func TestDomainXMLForwardsLoopbackOnly(t *testing.T) {
	x, err := DomainXML(MachineSpec{Name: "labforge-t", Accel: TCG, MemoryMiB: 512, CPUs: 1, Disk: "/d.qcow2",
		Firmware: Firmware{Code: "/c.fd", Vars: "/v.fd"}, NVRAM: "/n.fd", Console: "/c.log", SSHPort: 2222})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x, "hostfwd=tcp:127.0.0.1:2222-:22") || strings.Count(x, "hostfwd=") != 1 {
		t.Fatalf("want exactly one forward, from 127.0.0.1:2222:\n%s", x)
	}
}

// A guest is restricted unless it was given the outside: slirp's gateway
// is the hypervisor's loopback, which no untrusted guest may reach.
func TestDomainXMLRestrictsGuestNetwork(t *testing.T) {
	m := MachineSpec{Name: "labforge-t", Accel: TCG, MemoryMiB: 512, CPUs: 1, Disk: "/d.qcow2",
		Firmware: Firmware{Code: "/c.fd", Vars: "/v.fd"}, NVRAM: "/n.fd", Console: "/c.log", SSHPort: 2222}
	for _, tc := range []struct {
		outside bool
		want    string
	}{{false, "restrict=on"}, {true, "restrict=off"}} {
		m.Outside = tc.outside
		x, err := DomainXML(m)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(x, "restrict=") != 1 || !strings.Contains(x, "user,id=lfnet0,"+tc.want+",") {
			t.Fatalf("outside=%v: want %s on the slirp netdev:\n%s", tc.outside, tc.want, x)
		}
	}
}

func TestCheckPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := CheckPort(l.Addr().(*net.TCPAddr).Port); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("a held port: %v, want ErrPortInUse", err)
	}
	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPort(free); err != nil {
		t.Fatalf("a free port: %v", err)
	}
}

func TestIsPortConflict(t *testing.T) {
	cases := []struct {
		msg  string
		want bool
	}{
		// QEMU 7.2 (Debian 12) and later, through libvirt 9.
		{"start labforge-x: internal error: QEMU unexpectedly closed the monitor (vm='labforge-x'): qemu-system-x86_64: -netdev user,id=lfnet0,hostfwd=tcp:127.0.0.1:2222-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:2222-:22'", true},
		// Older QEMU.
		{"qemu-system-x86_64: could not set up host forwarding rule 'tcp:127.0.0.1:2222-:22'", true},
		// Wording that gives the system's reason.
		{"qemu-system-x86_64: Could not set up host forwarding rule: Address already in use", true},
		// Another port's rule is not this conflict.
		{"could not set up host forwarding rule 'tcp:127.0.0.1:22220-:22'", false},
		{"unsupported configuration: Domain requires KVM, but it is not available", false},
	}
	for _, c := range cases {
		if got := IsPortConflict(errors.New(c.msg), 2222); got != c.want {
			t.Errorf("%q: %v, want %v", c.msg, got, c.want)
		}
	}
	if IsPortConflict(nil, 2222) {
		t.Error("nil error is a conflict")
	}
}

func TestHypervisorGID(t *testing.T) {
	dir := t.TempDir()
	conf := dir + "/qemu.conf"
	if err := os.WriteFile(conf, []byte("# group = \"nope\"\ngroup = \"+4242\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if g := HypervisorGID(conf); g != 4242 {
		t.Fatalf("numeric group from qemu.conf: %d, want 4242", g)
	}
	if err := os.WriteFile(conf, []byte("group = \"no-such-group-here\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if g := HypervisorGID(conf); g != -1 {
		t.Fatalf("unknown group: %d, want -1", g)
	}
}
