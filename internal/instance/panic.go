package instance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/labforge/labforge/internal/virt"
)

// ErrPanicked is the cause of a wait cut short by the guest's kernel
// panicking: a panicked kernel hangs (panic=0) and its SSH never comes, so
// waiting out the boot timeout would only lose minutes.
var ErrPanicked = errors.New("the guest's kernel panicked")

// panicMark starts the kernel's panic line and its end marker alike.
var panicMark = []byte("Kernel panic - not syncing")

// consoleTailBytes is how much of the console each look reads: a panic's
// stack trace is a few KiB, and the panic line comes before it.
const consoleTailBytes = 16 << 10

// watchPanic returns a context cancelled with ErrPanicked (and the panic
// line) once read shows a kernel panic; it looks every interval. The stop
// function ends the watch.
func watchPanic(ctx context.Context, read func() ([]byte, error), every time.Duration) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			data, err := read()
			if err != nil {
				continue // not written yet
			}
			if line := panicLine(data); line != "" {
				cancel(fmt.Errorf("%w (%s)", ErrPanicked, line))
				return
			}
		}
	}()
	return pctx, func() { cancel(nil) }
}

// panicLine is the first line of data that says the kernel panicked.
func panicLine(data []byte) string {
	i := bytes.Index(data, panicMark)
	if i < 0 {
		return ""
	}
	line := data[i:]
	if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
		line = line[:j]
	}
	return string(line)
}

// ConsoleTail is the last n bytes of the instance's serial console.
func ConsoleTail(c *virt.Conn, inst *Instance, n int64) ([]byte, error) {
	_, data, err := consoleBytes(c, inst, n)
	return data, err
}

// consoleBytes reads the end of the instance's serial console log: a file
// here, a volume on a remote hypervisor. where names it for messages.
func consoleBytes(c *virt.Conn, inst *Instance, n int64) (where string, data []byte, err error) {
	if inst.Host != "" {
		vol := volumeNames(inst.Domain)[2]
		data, err = c.VolumeTail(vol, uint64(n))
		return "volume " + vol + " on " + c.Target().Label(), data, err
	}
	where = inst.ConsolePath()
	f, err := os.Open(where)
	if err != nil {
		return where, nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return where, nil, err
		}
	}
	data, err = io.ReadAll(f)
	return where, data, err
}
