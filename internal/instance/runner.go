package instance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/verify"
)

// RootRunner runs verify checks as root on the guest, and is the course's
// labs.Host there: labforge logs in as the lab's user, who may sudo
// without a password.
type RootRunner struct{ Client *sshx.Client }

// asRoot is cmd run by a root shell through sudo.
func asRoot(cmd string) string { return "sudo -n sh -c " + runx.Quote(cmd) }

// Run runs cmd through sudo.
func (r RootRunner) Run(ctx context.Context, cmd string) (verify.Result, error) {
	res, err := r.Client.Run(ctx, asRoot(cmd))
	return verify.Result{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, err
}

// Stream runs cmd through sudo, its stdout going to stdout as it comes
// (verify's batches report each check as it finishes).
func (r RootRunner) Stream(ctx context.Context, cmd string, stdout io.Writer) (int, string, error) {
	var stderr bytes.Buffer
	code, err := r.Client.Stream(ctx, asRoot(cmd), nil, stdout, &stderr)
	return code, stderr.String(), err
}

// StartPiped runs cmd through sudo with its stdin and stdout as pipes:
// verify's guest agent converses over them.
func (r RootRunner) StartPiped(ctx context.Context, cmd string) (io.WriteCloser, io.Reader, func() (int, string, error), error) {
	return r.Client.Start(ctx, asRoot(cmd))
}

// AgentProgram is the guest agent's executable, read and compressed once;
// nil when this labforge has none beside it.
func (RootRunner) AgentProgram() []byte { return guestAgent() }

var guestAgent = sync.OnceValue(func() []byte {
	p := paths.GuestAgent()
	if p == "" {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return verify.CompressAgent(data)
})

// Put copies data to a private temporary file as the login user (SFTP
// cannot sudo), then installs it as root.
func (h RootRunner) Put(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error {
	tmp := "/tmp/.labforge-put-" + randomHex(8)
	if err := h.Client.Write(ctx, bytes.NewReader(data), tmp, 0o600); err != nil {
		return err
	}
	cmd := "install -D -m " + strconv.FormatUint(uint64(mode.Perm()), 8)
	if owner != "" {
		cmd += " -o " + runx.Quote(owner) + " -g " + runx.Quote(owner)
	}
	q := runx.Quote(dst)
	cmd += " " + tmp + " " + q + "; rc=$?; rm -f " + tmp + "; [ $rc -eq 0 ] || exit $rc; " +
		// Give it the label its path calls for, not the temporary file's.
		"if command -v restorecon >/dev/null; then restorecon " + q + "; fi"
	res, err := h.Run(ctx, cmd)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("install %s: exit %d: %s", dst, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}
