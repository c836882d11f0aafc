package builder

import (
	"fmt"
	"os"
	"syscall"

	"github.com/labforge/labforge/internal/fsx"
)

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
	got, err := fsx.SHA256(path)
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
