package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/user"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/labforge/labforge/internal/sshx"
)

// LocalURI names this machine's system libvirtd.
const LocalURI = "qemu:///system"

// remoteSockets are where a remote libvirtd listens: the monolithic daemon
// (Debian) or the modular QEMU one (Fedora).
var remoteSockets = []string{"/var/run/libvirt/libvirt-sock", "/var/run/libvirt/virtqemud-sock"}

// Target is where a libvirt URI points.
type Target struct {
	URI    string
	Hop    *sshx.Hop // nil: this machine's libvirtd
	Socket string    // the remote libvirtd's socket ("": the usual ones)
}

// Label names the hypervisor briefly: "local" or user@host:port.
func (t Target) Label() string {
	if t.Hop == nil {
		return "local"
	}
	return t.Hop.String()
}

// Label names the hypervisor of uri briefly (the URI itself if it does
// not parse).
func Label(uri string) string {
	t, err := ParseURI(uri)
	if err != nil {
		return uri
	}
	return t.Label()
}

// ParseURI reads a hypervisor URI: qemu:///system (or "") for this
// machine, qemu+ssh://[user@]host[:port]/system for another, with libvirt's
// parameters keyfile=, known_hosts= and socket=. labforge speaks SSH itself,
// so the parameters of libvirt's ssh program (command=, no_tty=, netcat=,
// proxy=) do not apply and are ignored; the host key is always checked
// against known_hosts= (default ~/.ssh/known_hosts), and a URI that asks to
// skip that check is refused.
func ParseURI(uri string) (Target, error) {
	if uri == "" {
		uri = LocalURI
	}
	u, err := url.Parse(uri)
	if err != nil {
		return Target{}, fmt.Errorf("hypervisor URI %q: %w", uri, err)
	}
	t := Target{URI: uri}
	switch {
	case u.Scheme == "qemu" && u.Host == "" && (u.Path == "/system" || u.Path == "/session"):
		return t, nil
	case u.Scheme != "qemu+ssh":
		return Target{}, fmt.Errorf("hypervisor URI %q: labforge reaches this machine as qemu:///system and others as qemu+ssh://[user@]host[:port]/system", uri)
	case u.Host == "" || u.Hostname() == "":
		return Target{}, fmt.Errorf("hypervisor URI %q: no host", uri)
	case u.Path != "/system":
		return Target{}, fmt.Errorf("hypervisor URI %q: labforge needs the remote system daemon (path /system), not %q", uri, u.Path)
	}
	hop := &sshx.Hop{Addr: net.JoinHostPort(u.Hostname(), "22"), User: u.User.Username()}
	if p := u.Port(); p != "" {
		hop.Addr = net.JoinHostPort(u.Hostname(), p)
	}
	if hop.User == "" {
		me, err := user.Current()
		if err != nil {
			return Target{}, fmt.Errorf("hypervisor URI %q: no user, and %w", uri, err)
		}
		hop.User = me.Username
	}
	// These values end up in an ssh_config (the roster's ProxyJump): a
	// space or a newline there would add directives of the URI's choosing.
	if strings.IndexFunc(hop.User, unsafeInConfig) >= 0 || strings.IndexFunc(u.Hostname(), unsafeInConfig) >= 0 {
		return Target{}, fmt.Errorf("hypervisor URI %q: user and host may not hold spaces or control characters", uri)
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		if strings.IndexFunc(v, unsafeInConfig) >= 0 {
			return Target{}, fmt.Errorf("hypervisor URI %q: %s may not hold spaces or control characters", uri, k)
		}
		switch k {
		case "keyfile":
			hop.KeyFile = v
		case "known_hosts":
			hop.KnownHosts = v
		case "socket":
			t.Socket = v
		case "known_hosts_verify":
			if v != "normal" {
				return Target{}, fmt.Errorf("hypervisor URI %q: known_hosts_verify=%s: labforge always checks the host key against known_hosts", uri, v)
			}
		case "no_verify":
			if v != "0" {
				return Target{}, fmt.Errorf("hypervisor URI %q: no_verify=%s: labforge always checks the host key against known_hosts", uri, v)
			}
		case "command", "no_tty", "netcat", "proxy", "mode", "sshauth":
			// libvirt's own ssh transport; labforge dials SSH itself.
		default:
			return Target{}, fmt.Errorf("hypervisor URI %q: unknown parameter %q (labforge knows keyfile, known_hosts, socket)", uri, k)
		}
	}
	t.Hop = hop
	return t, nil
}

// Open connects to the libvirtd that uri names: this machine's (started
// when none answers, as Connect does), or another's through SSH, where
// libvirt's unix socket is reached as a forwarded stream.
func Open(ctx context.Context, uri string) (*Conn, error) {
	t, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if t.Hop == nil {
		return Connect(ctx, true)
	}
	// A host that does not answer fails here, not at TCP's own time-out.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hop, err := sshx.DialHop(ctx, *t.Hop)
	if err != nil {
		return nil, fmt.Errorf("hypervisor %s: %w", t.Label(), err)
	}
	socks := remoteSockets
	if t.Socket != "" {
		socks = []string{t.Socket}
	}
	var errs []error
	for _, s := range socks {
		nc, err := hop.DialContext(ctx, "unix", s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l := libvirt.NewWithDialer(dialers.NewAlreadyConnected(nc))
		if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
			nc.Close()
			hop.Close()
			return nil, fmt.Errorf("hypervisor %s: libvirt at %s: %w", t.Label(), s, err)
		}
		return &Conn{Libvirt: l, URI: uri, Socket: s, target: t, hop: hop}, nil
	}
	hop.Close()
	return nil, fmt.Errorf("hypervisor %s: no libvirtd socket answered through SSH (is libvirtd running there, and may sshd forward unix sockets?): %w", t.Label(), errors.Join(errs...))
}

func unsafeInConfig(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' }
