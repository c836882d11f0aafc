package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config says where and as whom to connect.
type Config struct {
	Addr    string        // host:port
	User    string        // login user
	Signer  ssh.Signer    // the client key
	HostKey ssh.PublicKey // the only host key accepted
	// Attempt bounds one connection attempt; the context bounds them all.
	Attempt time.Duration
}

// ErrHostKeyMismatch means the server showed a host key other than the
// pinned one: never retried, since it is not the guest we made.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// Client is a connection to one guest.
type Client struct {
	*ssh.Client
	cfg Config
}

// Dial connects, retrying while the guest boots: the forwarded port takes
// TCP before sshd is up, and cloud-init may install the key after sshd
// starts. It gives up at once on a host key mismatch.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Attempt == 0 {
		cfg.Attempt = 15 * time.Second
	}
	var last error
	for attempt := 1; ; attempt++ {
		c, err := dialOnce(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			return nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ssh %s@%s: gave up after %d attempts: %w (last error: %v)", cfg.User, cfg.Addr, attempt, ctx.Err(), last)
		case <-time.After(backoff(attempt)):
		}
	}
}

func backoff(attempt int) time.Duration {
	d := time.Duration(attempt) * 250 * time.Millisecond
	if d > 2*time.Second {
		d = 2 * time.Second
	}
	return d
}

func dialOnce(ctx context.Context, cfg Config) (*Client, error) {
	actx, cancel := context.WithTimeout(ctx, cfg.Attempt)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(actx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := actx.Deadline()
	_ = conn.SetDeadline(deadline)
	var mismatch error
	cc := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if cfg.HostKey == nil || !bytes.Equal(key.Marshal(), cfg.HostKey.Marshal()) {
				mismatch = fmt.Errorf("%w: %s offered %s %s, expected %s", ErrHostKeyMismatch, cfg.Addr,
					key.Type(), ssh.FingerprintSHA256(key), fingerprint(cfg.HostKey))
				return mismatch
			}
			return nil
		},
		// The pinned key is Ed25519; the library would otherwise ask for
		// ECDSA first and a guest with both would show the wrong one.
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, cc)
	if err != nil {
		conn.Close()
		if mismatch != nil {
			return nil, mismatch
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &Client{Client: ssh.NewClient(sc, chans, reqs), cfg: cfg}, nil
}

func fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return "none pinned"
	}
	return ssh.FingerprintSHA256(k)
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Run runs cmd and collects its output. A non-zero exit is not an error;
// a lost connection or a cancelled context is.
func (c *Client) Run(ctx context.Context, cmd string) (Result, error) {
	var out, errb bytes.Buffer
	code, err := c.Stream(ctx, cmd, nil, &out, &errb)
	return Result{Stdout: out.String(), Stderr: errb.String(), ExitCode: code}, err
}

// Stream runs cmd with the given standard streams and returns its exit code.
func (c *Client) Stream(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	s, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("ssh session: %w", err)
	}
	defer s.Close()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(cmd); err != nil {
		return -1, fmt.Errorf("ssh start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return -1, ctx.Err()
	case err := <-done:
		var ee *ssh.ExitError
		switch {
		case err == nil:
			return 0, nil
		case errors.As(err, &ee):
			return ee.ExitStatus(), nil
		default:
			return -1, fmt.Errorf("ssh %q: %w", cmd, err)
		}
	}
}
