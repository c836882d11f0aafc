package instance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPanicLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"[    0.5] Booting\n[    1.2] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug\r\n[ 1.3] CPU: 0\n",
			"Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug"},
		{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
		{"debian login: ", ""},
		{"", ""},
	} {
		if got := panicLine([]byte(c.in)); got != c.want {
			t.Errorf("panicLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The watch reads a console file as it grows, as QEMU writes it.
func TestWatchPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	read := func() ([]byte, error) { return os.ReadFile(path) }
	ctx, stop := watchPanic(context.Background(), read, 10*time.Millisecond)
	defer stop()

	os.WriteFile(path, []byte("[    0.0] Linux version 6.1\n"), 0o644)
	select {
	case <-ctx.Done():
		t.Fatalf("cancelled on a healthy console: %v", context.Cause(ctx))
	case <-time.After(100 * time.Millisecond):
	}
	os.WriteFile(path, []byte("[    0.0] Linux version 6.1\n[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n"), 0o644)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a panic on the console did not end the wait")
	}
	err := context.Cause(ctx)
	if !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "Attempted to kill init!") {
		t.Fatalf("cause %v: want ErrPanicked with the panic line", err)
	}

	// Stopping the watch is not a panic.
	ctx, stop = watchPanic(context.Background(), read, time.Hour)
	stop()
	if errors.Is(context.Cause(ctx), ErrPanicked) {
		t.Fatal("a stopped watch reports a panic")
	}
}
