package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Hop is an SSH server labforge passes through: a remote hypervisor, whose
// libvirtd listens on a unix socket and whose loopback holds the guests'
// SSH forwards.
type Hop struct {
	Addr       string // host:port
	User       string
	KeyFile    string // "": ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent
	KnownHosts string // "": ~/.ssh/known_hosts
}

// String is user@host:port, as ssh -J takes it.
func (h Hop) String() string { return h.User + "@" + h.Addr }

// knownHostsFile is the file the hop's host key is checked against.
func (h Hop) knownHostsFile() string {
	if h.KnownHosts != "" {
		return h.KnownHosts
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh", "known_hosts")
}

// DialHop connects to h. Its host key must be listed for it in the
// known_hosts file: an unknown or changed key is refused, never learnt.
func DialHop(ctx context.Context, h Hop) (*ssh.Client, error) {
	known := h.knownHostsFile()
	check, err := knownhosts.New(known)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: read known hosts: %w (labforge checks the hypervisor's host key; name the file with known_hosts= in the URI)", h, err)
	}
	auth, closeAgent, err := h.auth()
	if err != nil {
		return nil, err
	}
	// The agent signs during the handshake only: its socket closes after.
	defer closeAgent()
	// Go's client asks for ECDSA before Ed25519: when the server has both
	// and known_hosts lists only one, ask again for the listed type.
	var algos []string
	for {
		c, bad, err := dialHopOnce(ctx, h, check, auth, algos)
		if bad != nil && len(bad.want) > 0 && algos == nil {
			algos = algorithmsOf(bad.want)
			continue
		}
		if bad != nil {
			return nil, bad.error(h, known)
		}
		if err != nil {
			return nil, fmt.Errorf("ssh %s: %w", h, err)
		}
		return c, nil
	}
}

// badHostKey is a host key that known_hosts does not list for the host.
type badHostKey struct {
	offered ssh.PublicKey
	want    []knownhosts.KnownKey // what known_hosts lists instead; none: the host is unknown
}

func dialHopOnce(ctx context.Context, h Hop, check ssh.HostKeyCallback, auth []ssh.AuthMethod, algos []string) (*ssh.Client, *badHostKey, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.Addr)
	if err != nil {
		return nil, nil, err
	}
	var bad *badHostKey
	cc := &ssh.ClientConfig{User: h.User, Auth: auth, HostKeyAlgorithms: algos,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := check(host, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				bad = &badHostKey{offered: key, want: ke.Want}
			}
			return err
		}}
	c, err := handshake(ctx, conn, h.Addr, cc)
	if bad != nil {
		return nil, bad, err
	}
	return c, nil, err
}

// error says what was offered and what known_hosts lists.
func (b *badHostKey) error(h Hop, known string) error {
	fp := b.offered.Type() + " " + ssh.FingerprintSHA256(b.offered)
	if len(b.want) == 0 {
		return fmt.Errorf("ssh %s: host key %s is not in %s: check that it is the hypervisor's and add it (ssh-keyscan -t %s -p PORT HOST >> %s), or name another file with known_hosts= in the URI",
			h, fp, known, strings.TrimPrefix(b.offered.Type(), "ssh-"), known)
	}
	var listed []string
	for _, w := range b.want {
		listed = append(listed, fmt.Sprintf("%s %s (%s:%d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Filename, w.Line))
	}
	return fmt.Errorf("%w: ssh %s offered %s, known hosts list %s", ErrHostKeyMismatch, h, fp, strings.Join(listed, ", "))
}

// algorithmsOf names the host key algorithms that yield the given keys.
func algorithmsOf(keys []knownhosts.KnownKey) []string {
	var out []string
	for _, k := range keys {
		if k.Key.Type() == ssh.KeyAlgoRSA {
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			continue
		}
		out = append(out, k.Key.Type())
	}
	return out
}

// auth is the key file, or else the user's usual keys and agent; the
// func closes the agent's socket once the handshakes are done.
func (h Hop) auth() ([]ssh.AuthMethod, func(), error) {
	none := func() {}
	if h.KeyFile != "" {
		s, err := LoadSigner(h.KeyFile)
		if err != nil {
			return nil, none, fmt.Errorf("ssh %s: key: %w", h, err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(s)}, none, nil
	}
	var signers []ssh.Signer
	home, _ := os.UserHomeDir()
	for _, k := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		if s, err := LoadSigner(filepath.Join(home, ".ssh", k)); err == nil {
			signers = append(signers, s)
		}
	}
	closeAgent := none
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			closeAgent = func() { c.Close() }
			if ss, err := agent.NewClient(c).Signers(); err == nil {
				signers = append(signers, ss...)
			}
		}
	}
	if len(signers) == 0 {
		closeAgent()
		return nil, none, fmt.Errorf("ssh %s: no key: name one with keyfile= in the URI, or put it in ~/.ssh or an agent", h)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closeAgent, nil
}

// handshake runs the SSH handshake on conn, closing conn when ctx ends:
// a connection through a hop has no deadlines to bound it.
func handshake(ctx context.Context, conn net.Conn, addr string, cc *ssh.ClientConfig) (*ssh.Client, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}
