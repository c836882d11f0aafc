package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"syscall"
)

// fileSHA256 hashes a file's bytes.
func fileSHA256(path string) (string, error) {
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

// ChecksumError is a cached file whose bytes no longer match its record.
type ChecksumError struct {
	Path, Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s is corrupt: sha256 %s, expected %s; delete it or rebuild with `labforge build --force`", e.Path, e.Got, e.Want)
}

// checkFile verifies a cached file against the sha256 recorded for it.
func checkFile(path, want string) error {
	if want == "" {
		return fmt.Errorf("cached %s has no recorded sha256; rebuild with `labforge build --force`", path)
	}
	got, err := fileSHA256(path)
	if err != nil {
		return err
	}
	if got != want {
		return &ChecksumError{Path: path, Want: want, Got: got}
	}
	return nil
}

// allocatedBytes is the space a (sparse) file takes on disk.
func allocatedBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
