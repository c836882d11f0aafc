package sshx

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// Upload copies the local file src to dst on the guest with mode.
func (c *Client) Upload(ctx context.Context, src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return c.Write(ctx, in, dst, mode)
}

// Write copies r to dst on the guest with mode.
func (c *Client) Write(ctx context.Context, r io.Reader, dst string, mode os.FileMode) error {
	sc, done, err := c.sftp(ctx)
	if err != nil {
		return err
	}
	defer done()
	f, err := sc.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("sftp create %s: %w", dst, err)
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		return fmt.Errorf("sftp write %s: %w", dst, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Download copies src on the guest to w.
func (c *Client) Download(ctx context.Context, src string, w io.Writer) error {
	sc, done, err := c.sftp(ctx)
	if err != nil {
		return err
	}
	defer done()
	f, err := sc.Open(src)
	if err != nil {
		return fmt.Errorf("sftp open %s: %w", src, err)
	}
	defer f.Close()
	_, err = f.WriteTo(w)
	return err
}

// sftp opens an SFTP session that a cancelled ctx closes, so a copy never
// outlives its caller; done closes it.
func (c *Client) sftp(ctx context.Context) (*sftp.Client, func(), error) {
	sc, err := sftp.NewClient(c.Client)
	if err != nil {
		return nil, nil, fmt.Errorf("sftp: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	return sc, func() { stop(); sc.Close() }, nil
}
