package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
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
	// AuthFinal makes a refused key an error at once: right for a guest
	// that is up, whose authorised keys no longer change.
	AuthFinal bool
	// Jump, when set, is the hypervisor the guest runs on: Addr is then
	// an address on its loopback, reached through an SSH connection to it.
	Jump *Hop
}

// where names the guest's address for errors.
func (cfg Config) where() string {
	if cfg.Jump != nil {
		return cfg.User + "@" + cfg.Addr + " via " + cfg.Jump.String()
	}
	return cfg.User + "@" + cfg.Addr
}

// ErrHostKeyMismatch means the server showed a host key other than the
// pinned one: never retried, since it is not the guest we made.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// Client is a connection to one guest.
type Client struct {
	*ssh.Client
	cfg Config
	hop *ssh.Client // the connection to cfg.Jump, closed with the client
}

// Close ends the connection, and the one to the hypervisor it went through.
func (c *Client) Close() error {
	err := c.Client.Close()
	if c.hop != nil {
		c.hop.Close()
	}
	return err
}

// Dial connects, retrying while the guest boots: the forwarded port takes
// TCP before sshd is up, and cloud-init may install the key after sshd
// starts. It gives up at once on a host key mismatch.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Attempt == 0 {
		cfg.Attempt = 15 * time.Second
	}
	dial := (&net.Dialer{}).DialContext
	var hop *ssh.Client
	if cfg.Jump != nil {
		var err error
		if hop, err = DialHop(ctx, *cfg.Jump); err != nil {
			return nil, fmt.Errorf("ssh %s: %w", cfg.where(), err)
		}
		dial = hop.DialContext
	}
	var last, auth error
	for attempt := 1; ; attempt++ {
		c, err := dialOnce(ctx, cfg, dial)
		if err == nil {
			c.hop = hop
			return c, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			closeHop(hop)
			return nil, err
		}
		last = err
		if isAuthError(err) {
			if cfg.AuthFinal {
				closeHop(hop)
				return nil, fmt.Errorf("ssh %s: %w", cfg.where(), err)
			}
			auth = err
		}
		select {
		case <-ctx.Done():
			closeHop(hop)
			// A refused key says more than the time-out of a later,
			// slower attempt.
			if auth != nil {
				last = auth
			}
			return nil, fmt.Errorf("ssh %s: gave up after %d attempts: %w (last error: %v)", cfg.where(), attempt, ctx.Err(), last)
		case <-time.After(backoff(attempt)):
		}
	}
}

// isAuthError: the server answered and refused the key.
func isAuthError(err error) bool {
	return strings.Contains(err.Error(), "unable to authenticate")
}

func backoff(attempt int) time.Duration {
	d := time.Duration(attempt) * 250 * time.Millisecond
	if d > 2*time.Second {
		d = 2 * time.Second
	}
	return d
}

func closeHop(hop *ssh.Client) {
	if hop != nil {
		hop.Close()
	}
}

func dialOnce(ctx context.Context, cfg Config, dial func(context.Context, string, string) (net.Conn, error)) (*Client, error) {
	actx, cancel := context.WithTimeout(ctx, cfg.Attempt)
	defer cancel()
	conn, err := dial(actx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
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
	c, err := handshake(actx, conn, cfg.Addr, cc)
	if err != nil {
		if mismatch != nil {
			return nil, mismatch
		}
		return nil, err
	}
	return &Client{Client: c, cfg: cfg}, nil
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
		return exitCode(cmd, err)
	}
}

// exitCode is a finished session's exit status; an error only when the
// session failed, not when the command did.
func exitCode(cmd string, err error) (int, error) {
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

// Start runs cmd with its stdin and stdout as pipes for the caller (a
// conversation, such as verify's guest agent); wait returns its exit code
// and stderr once it ends, or when ctx ends (then the session is killed).
// Closing stdin tells the command that the conversation is over.
func (c *Client) Start(ctx context.Context, cmd string) (stdin io.WriteCloser, stdout io.Reader, wait func() (int, string, error), err error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ssh session: %w", err)
	}
	var errb bytes.Buffer
	s.Stderr = &errb
	if stdin, err = s.StdinPipe(); err == nil {
		stdout, err = s.StdoutPipe()
	}
	if err == nil {
		err = s.Start(cmd)
	}
	if err != nil {
		s.Close()
		return nil, nil, nil, fmt.Errorf("ssh start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	// Ending ctx ends the session, also while its stdout is being read.
	stop := context.AfterFunc(ctx, func() {
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
	})
	wait = func() (int, string, error) {
		defer s.Close()
		defer stop()
		select {
		case <-ctx.Done():
			return -1, "", ctx.Err()
		case err := <-done:
			code, err := exitCode(cmd, err)
			return code, errb.String(), err
		}
	}
	return stdin, stdout, wait, nil
}
