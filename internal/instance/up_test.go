package instance

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// portConflict is what Start returns when QEMU cannot bind the SSH
// forward (QEMU 7.2, libvirt 9).
func portConflict(port int) error {
	p := strconv.Itoa(port)
	return errors.New("start labforge-x: internal error: QEMU unexpectedly closed the monitor (vm='labforge-x'): qemu-system-x86_64: -netdev user,id=lfnet0,hostfwd=tcp:127.0.0.1:" +
		p + "-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:" + p + "-:22'")
}

// fakeStart records the ports tried and fails with errs in turn.
type fakeStart struct {
	tried   []int
	removed int
	errs    []func(port int) error
}

func (f *fakeStart) start(port int) error {
	f.tried = append(f.tried, port)
	if len(f.errs) == 0 {
		return nil
	}
	e := f.errs[0]
	f.errs = f.errs[1:]
	return e(port)
}

func (f *fakeStart) remove() error { f.removed++; return nil }

func picker(ports ...int) func() (int, error) {
	return func() (int, error) {
		p := ports[0]
		ports = ports[1:]
		return p, nil
	}
}

// A picked port lost to another program before QEMU bound it: the failed
// domain is removed and a new port tried.
func TestStartRetriesLostPort(t *testing.T) {
	f := &fakeStart{errs: []func(int) error{portConflict}}
	got, err := startOnPort(0, picker(40001, 40002), f.start, f.remove)
	if err != nil {
		t.Fatal(err)
	}
	if got != 40002 || len(f.tried) != 2 || f.tried[0] != 40001 || f.removed != 1 {
		t.Fatalf("port %d, tried %v, removed %d; want 40002 after 40001, one removal", got, f.tried, f.removed)
	}
}

// The retry happens once: a second lost race is an error naming the port.
func TestStartRetriesOnce(t *testing.T) {
	f := &fakeStart{errs: []func(int) error{portConflict, portConflict}}
	_, err := startOnPort(0, picker(40001, 40002, 40003), f.start, f.remove)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:40002 was taken") || len(f.tried) != 2 {
		t.Fatalf("err %v after %v; want a failure naming 40002 after two tries", err, f.tried)
	}
}

// A port the user chose is never swapped for another.
func TestStartChosenPortTaken(t *testing.T) {
	f := &fakeStart{errs: []func(int) error{portConflict}}
	_, err := startOnPort(2222, picker(), f.start, f.remove)
	want := "ssh port 127.0.0.1:2222 is already in use; pick another --ssh-port or leave it out to get a free one"
	if err == nil || err.Error() != want || len(f.tried) != 1 {
		t.Fatalf("err %v after %v; want %q after one try", err, f.tried, want)
	}
}

// Other start failures are not retried.
func TestStartOtherErrorNotRetried(t *testing.T) {
	boom := errors.New("start labforge-x: unsupported configuration: no KVM")
	f := &fakeStart{errs: []func(int) error{func(int) error { return boom }}}
	_, err := startOnPort(0, picker(40001, 40002), f.start, f.remove)
	if !errors.Is(err, boom) || len(f.tried) != 1 || f.removed != 0 {
		t.Fatalf("err %v, tried %v, removed %d; want the error as is after one try", err, f.tried, f.removed)
	}
}

func TestCheckSSHPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	want := "ssh port 127.0.0.1:" + strconv.Itoa(port) + " is already in use"
	if err := CheckSSHPort(port); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("taken port: %v, want %q", err, want)
	}
	l.Close()
	if err := CheckSSHPort(port); err != nil {
		t.Fatalf("freed port: %v", err)
	}
	for _, bad := range []int{-1, 65536} {
		if err := CheckSSHPort(bad); err == nil || !strings.Contains(err.Error(), "not a TCP port") {
			t.Fatalf("port %d: %v", bad, err)
		}
	}
}
