package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// guestReachesNoHost checks, from inside the running instance and as its
// student (root in the guest is no different to slirp), that nothing of
// the hypervisor answers: a listener on the host's 127.0.0.1 (slirp's
// gateway 10.0.2.2 leads there unless restricted), nor the address a
// cloud's metadata service would have. SSH in still works: it carries the
// test.
func guestReachesNoHost(t *testing.T, name string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var hits atomic.Int32
	go countConnections(l, &hits)
	port := l.Addr().(*net.TCPAddr).Port
	for _, target := range []string{fmt.Sprintf("10.0.2.2:%d", port), "169.254.169.254:80"} {
		cmd := fmt.Sprintf("curl -s --max-time 5 http://%s/; echo \" exit=$?\"", target)
		out := mustLabforge(t, "ssh", "-n", name, "--", cmd).stdout
		if strings.Contains(out, "hypervisor-loopback") || strings.Contains(out, " exit=0") {
			t.Errorf("the guest reached %s: %q", target, out)
		}
	}
	// As root in the guest too, with a raw TCP connect.
	r := labforge(t, "ssh", "-n", name, "--", fmt.Sprintf("sudo timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/%d'", port))
	if r.code == 0 {
		t.Errorf("root in the guest connected to the host's loopback port %d", port)
	}
	// slirp's IPv6 gateway (fec0::2) leads to the host's ::1 likewise.
	if l6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer l6.Close()
		go countConnections(l6, &hits)
		p6 := l6.Addr().(*net.TCPAddr).Port
		r := labforge(t, "ssh", "-n", name, "--", fmt.Sprintf("sudo timeout 5 bash -c 'exec 3<>/dev/tcp/fec0::2/%d'", p6))
		if r.code == 0 {
			t.Errorf("root in the guest connected to the host's IPv6 loopback port %d", p6)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("the host's loopback listener took %d connections from the guest", n)
	}
	if x := virsh(t, "dumpxml", "labforge-"+name); !strings.Contains(x, "restrict=on") {
		t.Fatalf("the guest's slirp is not restricted:\n%s", x)
	}
}

// countConnections counts what connects to l, answering each as an HTTP
// server would, until l is closed.
func countConnections(l net.Listener, hits *atomic.Int32) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		hits.Add(1)
		fmt.Fprint(c, "HTTP/1.0 200 OK\r\n\r\nhypervisor-loopback\n")
		c.Close()
	}
}

// instanceFilesPrivate checks that the instance's directory is closed to
// the machine's other users (the seed holds the guest's SSH host key, the
// overlay what the guest wrote) and that an unprivileged user can read
// none of its files.
func instanceFilesPrivate(t *testing.T, name string) {
	t.Helper()
	dir := filepath.Join(stateDir(), "instances", name)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		t.Fatalf("%s is mode %v: open to other users", dir, st.Mode().Perm())
	}
	for _, f := range []string{"seed.iso", "disk.qcow2", "id_ed25519", "nvram.fd"} {
		p := filepath.Join(dir, f)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %v, want no access for group or others", p, st.Mode().Perm())
		}
		nobodyCannotRead(t, p)
	}
}

// cacheFilesPrivate: what in the cache holds a guest's secrets (layers
// below the seal, warm states, build logs) is no other local user's.
func cacheFilesPrivate(t *testing.T) {
	t.Helper()
	n := 0
	for _, g := range []string{"layers/*.qcow2", "warm/*/*", "builds/*/build.log"} {
		m, _ := filepath.Glob(filepath.Join(cacheDir(), g))
		for _, p := range m {
			nobodyCannotRead(t, p)
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no layer, warm state or build log in %s", cacheDir())
	}
	t.Logf("%d files of the cache read by nobody: none", n)
}

// nobodyCannotRead: user nobody, a local user with no group of the
// hypervisor's, gets "Permission denied" reading p.
func nobodyCannotRead(t *testing.T, p string) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "head", "-c1", p).CombinedOutput()
	if err == nil {
		t.Errorf("user nobody read %s", p)
	} else if !strings.Contains(string(out), "Permission denied") {
		t.Errorf("nobody reading %s: %v %s (want Permission denied)", p, err, out)
	}
}
