// Package fsx holds the file primitives labforge's caches use: a content
// hash, an exclusive lock that dies with its process, and a sparse file's
// real size.
package fsx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SHA256 hashes a file's bytes.
func SHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Lock takes an exclusive lock on path, waiting for it when wait is true.
// The lock dies with the process, so a build killed with -9 never leaves
// one behind; what it leaves on disk is cleaned by the next holder.
func Lock(path string, wait bool) (func(), error) { return flock(path, syscall.LOCK_EX, wait) }

// LockShared takes a shared lock on path: many holders at once, none
// while someone holds it exclusively.
func LockShared(path string, wait bool) (func(), error) { return flock(path, syscall.LOCK_SH, wait) }

// LockContext takes an exclusive lock on path, waiting while another
// process holds it (calling waiting once, when it first finds it held)
// until ctx ends: unlike a blocking flock, Ctrl-C ends the wait.
func LockContext(ctx context.Context, path string, waiting func()) (func(), error) {
	told := false
	for {
		unlock, err := Lock(path, false)
		if !errors.Is(err, ErrLocked) {
			return unlock, err
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrLocked means another process holds the lock (a call that does not
// wait); any other error from Lock is about the lock file itself.
var ErrLocked = errors.New("held by another process")

func flock(path string, how int, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// CopyFile copies a small file (an NVRAM store, a key) to dst with mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// Allocated is the space a (sparse) file really takes on the host, or -1.
func Allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return -1
	}
	return st.Blocks * 512
}

// WriteAtomic writes data to path whole or not at all, through a
// temporary file of its own that reaches the disk before the rename.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename itself reaches the disk with the directory.
	return Sync(filepath.Dir(path))
}

// Sync makes what was written to path (a directory: its entries) reach
// the disk.
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
