// Package virt is labforge's small layer over libvirt: connect (starting
// libvirtd when none answers), define and start domains, follow their
// lifecycle through events, and tear them down.
package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/crypto/ssh"
)

// Conn is a connection to one libvirtd.
type Conn struct {
	*libvirt.Libvirt
	URI    string
	Socket string

	target Target
	hop    *ssh.Client // the SSH connection to a remote hypervisor; nil here

	mu       sync.Mutex
	watchers map[int]watcher // lifecycle event listeners, see watch
	nextID   int
	poolMu   sync.Mutex // one pool definition at a time, see EnsurePool
	// streamMu: one volume stream at a time. go-libvirt deadlocks when two
	// goroutines read volumes over one connection at once (seen: two
	// students' console reads on one hypervisor in a class).
	streamMu sync.Mutex
}

// Remote says whether the hypervisor is another machine, whose disks
// live in its storage pool and whose guests are reached through SSH.
func (c *Conn) Remote() bool { return c.hop != nil }

// Target is the hypervisor the connection reaches.
func (c *Conn) Target() Target { return c.target }

// FreePort picks a free TCP port on the hypervisor's loopback, where
// QEMU's forward will bind it: on a remote one sshd binds it for us (a
// remote forward of port 0) and lets it go at once.
func (c *Conn) FreePort() (int, error) {
	if c.hop == nil {
		return FreePort()
	}
	l, err := c.hop.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port on %s: %w", c.target.Label(), err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SocketPath is the local libvirtd socket for this user: the system daemon
// for root, the session daemon otherwise.
func SocketPath() (path, uri string) {
	if p := os.Getenv("LABFORGE_LIBVIRT_SOCKET"); p != "" {
		uri := string(libvirt.QEMUSystem)
		if os.Geteuid() != 0 {
			uri = string(libvirt.QEMUSession)
		}
		return p, uri
	}
	if os.Geteuid() == 0 {
		// Monolithic libvirtd (Debian) or the modular QEMU daemon (Fedora).
		for _, p := range []string{"/var/run/libvirt/libvirt-sock", "/var/run/libvirt/virtqemud-sock"} {
			if _, err := os.Stat(p); err == nil {
				return p, string(libvirt.QEMUSystem)
			}
		}
		return "/var/run/libvirt/libvirt-sock", string(libvirt.QEMUSystem)
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("libvirt-%d", os.Geteuid()))
	}
	return filepath.Join(dir, "libvirt", "libvirt-sock"), string(libvirt.QEMUSession)
}

// Connect reaches the local libvirtd. When none answers and start is true
// it starts one itself (virtlogd, then libvirtd, as daemons): hosts without
// systemd, such as CI containers, have nothing else to start it.
func Connect(ctx context.Context, start bool) (*Conn, error) {
	sock, uri := SocketPath()
	// A socket named by the user belongs to a daemon labforge cannot start.
	start = start && os.Getenv("LABFORGE_LIBVIRT_SOCKET") == ""
	c, err := dial(sock, uri)
	if err == nil || !start {
		if err != nil {
			return nil, fmt.Errorf("libvirtd not reachable at %s: %w (run `labforge doctor`)", sock, err)
		}
		return c, nil
	}
	if serr := startDaemons(ctx, sock); serr != nil {
		return nil, fmt.Errorf("libvirtd not reachable at %s (%v) and could not be started: %w", sock, err, serr)
	}
	return dial(sock, uri)
}

func dial(sock, uri string) (*Conn, error) {
	if _, err := os.Stat(sock); err != nil {
		return nil, err
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(libvirt.ConnectURI(uri)); err != nil {
		return nil, err
	}
	return &Conn{Libvirt: l, URI: uri, Socket: sock, target: Target{URI: uri}}, nil
}

func startDaemons(ctx context.Context, sock string) error {
	for _, d := range []string{"virtlogd", "libvirtd"} {
		path, err := findDaemon(d)
		if err != nil {
			return err
		}
		// -d forks into the background; a second virtlogd just exits.
		if out, err := exec.CommandContext(ctx, path, "-d").CombinedOutput(); err != nil && d == "libvirtd" {
			return fmt.Errorf("%s -d: %w: %s", path, err, out)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("libvirtd started but its socket never answered")
}

func findDaemon(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not installed (Debian: apt-get install libvirt-daemon-system)", name)
}

// Close ends the connection, and the SSH connection it runs through.
func (c *Conn) Close() error {
	err := c.Disconnect()
	if c.hop != nil {
		c.hop.Close()
	}
	return err
}
