package sshx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hopServer is an SSH server on loopback that lets clientKey in, with the
// given host keys; it serves handshakes only.
func hopServer(t *testing.T, clientKey ssh.PublicKey, hostKeys ...ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "handshakes only")
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestDialHopHostKeys(t *testing.T) {
	dir := t.TempDir()
	client, _ := NewKeyPair("")
	keyFile := filepath.Join(dir, "id")
	os.WriteFile(keyFile, client.PrivatePEM, 0o600)
	host, _ := NewKeyPair("")
	other, _ := NewKeyPair("")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSigner, _ := ssh.NewSignerFromKey(ec)
	// The server offers ECDSA too, which Go's client prefers: known_hosts
	// listing only the Ed25519 key must still be enough.
	addr := hopServer(t, client.Signer.PublicKey(), host.Signer, ecSigner)
	known := func(name string, keys ...ssh.PublicKey) string {
		var lines []string
		for _, k := range keys {
			lines = append(lines, knownhosts.Line([]string{addr}, k))
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hop := Hop{Addr: addr, User: "root", KeyFile: keyFile}

	hop.KnownHosts = known("good", host.Signer.PublicKey())
	c, err := DialHop(ctx, hop)
	if err != nil {
		t.Fatalf("listed host key refused: %v", err)
	}
	c.Close()

	hop.KnownHosts = known("empty")
	if _, err := DialHop(ctx, hop); err == nil || !strings.Contains(err.Error(), "is not in "+hop.KnownHosts) {
		t.Errorf("unknown host: %v, want a refusal naming the known_hosts file", err)
	}
	hop.KnownHosts = known("other", other.Signer.PublicKey())
	if _, err := DialHop(ctx, hop); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("changed host key: %v, want ErrHostKeyMismatch", err)
	}
	hop.KnownHosts = filepath.Join(dir, "missing")
	if _, err := DialHop(ctx, hop); err == nil || !strings.Contains(err.Error(), "known_hosts=") {
		t.Errorf("no known_hosts file: %v", err)
	}
}
