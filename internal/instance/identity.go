package instance

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
)

// identity is what makes a restored guest this host and no other: every
// clone of one warm state starts with the saved guest's keys, names,
// clock and random state.
type identity struct {
	hostname  string
	machineID string
	userKey   *sshx.KeyPair
	hostKey   *sshx.KeyPair
	entropy   string // hex, from this machine's RNG
}

func newIdentity(name, user, dom string) (*identity, error) {
	uk, err := sshx.NewKeyPair(user + "@" + dom)
	if err != nil {
		return nil, err
	}
	hk, err := sshx.NewKeyPair("")
	if err != nil {
		return nil, err
	}
	return &identity{hostname: name, machineID: randomHex(16), userKey: uk, hostKey: hk, entropy: randomHex(64)}, nil
}

// ReseedMark is what a restored guest's kernel log says once its RNG has
// been reseeded from the host.
const ReseedMark = "labforge: random: crng reseeded from the host after restore"

// script is run as root in the restored guest. Each part says why.
func (id *identity) script(user string) string {
	q := runx.Quote
	return strings.Join([]string{
		"set -eu",
		// The clock lags by the time the state sat on disk; the RTC
		// follows the host's.
		"hwclock --hctosys 2>/dev/null || date -s @" + fmt.Sprint(time.Now().Unix()) + " >/dev/null",
		// Every clone resumed with the same RNG state. Debian's cloud
		// kernel has no vmgenid driver, so the host's bytes are credited
		// (RNDADDENTROPY) and the CRNG reseeded now (RNDRESEEDCRNG), not
		// at its next scheduled reseed.
		`if command -v python3 >/dev/null; then python3 -c 'import fcntl, struct, sys
e = bytes.fromhex(sys.argv[1])
with open("/dev/urandom", "wb") as f:
    fcntl.ioctl(f, 0x40085203, struct.pack("ii", len(e) * 8, len(e)) + e)
    fcntl.ioctl(f, 0x5207)
' ` + id.entropy + `; echo ` + q(ReseedMark) + ` >/dev/kmsg; else echo ` + id.entropy + ` >/dev/urandom; fi`,
		// A new machine-id, keeping the file's time: it marks the first
		// boot of the disk this host continues (the lab's checks compare
		// the cluster's CA with it). journald files by machine-id.
		"t=$(stat -c %Y /etc/machine-id)",
		"echo " + id.machineID + " > /etc/machine-id",
		"touch -d @$t /etc/machine-id",
		"systemctl restart systemd-journald",
		"echo " + q(id.hostname) + " > /etc/hostname",
		"hostname " + q(id.hostname),
		`if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts; then sed -i 's/^127\.0\.1\.1[[:space:]].*/127.0.1.1 ` + id.hostname + `/' /etc/hosts; else echo '127.0.1.1 ` + id.hostname + `' >> /etc/hosts; fi`,
		// The saved host key goes; sshd reloads and offers the new one to
		// new connections.
		"umask 077",
		"rm -f /etc/ssh/ssh_host_*",
		"printf '%s\\n' " + q(strings.TrimSpace(string(id.hostKey.PrivatePEM))) + " > /etc/ssh/ssh_host_ed25519_key",
		"printf '%s\\n' " + q(strings.TrimSpace(id.hostKey.AuthorizedKey)) + " > /etc/ssh/ssh_host_ed25519_key.pub",
		"chmod 0644 /etc/ssh/ssh_host_ed25519_key.pub",
		// The saved client key goes: only this host's may log in.
		"home=$(getent passwd " + q(user) + " | cut -d: -f6)",
		"printf '%s\\n' " + q(strings.TrimSpace(id.userKey.AuthorizedKey)) + " > \"$home/.ssh/authorized_keys.new\"",
		"chown " + q(user) + ": \"$home/.ssh/authorized_keys.new\"",
		"mv \"$home/.ssh/authorized_keys.new\" \"$home/.ssh/authorized_keys\"",
		"if command -v restorecon >/dev/null; then restorecon /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub \"$home/.ssh/authorized_keys\" /etc/hostname /etc/machine-id; fi",
		"systemctl reload ssh 2>/dev/null || systemctl reload sshd",
		// Timers were stopped before the save (a clock jump would fire
		// them all at once); the clock is right again.
		"systemctl start timers.target",
	}, "\n")
}

// apply logs in with the saved keys and makes the guest this host.
func (id *identity) apply(ctx context.Context, c *virt.Conn, inst *Instance, saved sshx.Config, timeout time.Duration) error {
	wctx, stop, err := c.WatchStop(ctx, inst.Domain)
	if err != nil {
		return err
	}
	defer stop()
	tctx, cancel := context.WithTimeout(wctx, timeout)
	defer cancel()
	client, err := sshx.Dial(tctx, saved)
	if err != nil {
		return fmt.Errorf("%s: the restored guest did not answer on SSH: %w", inst.Domain, err)
	}
	defer client.Close()
	res, err := RootRunner{Client: client}.Run(tctx, id.script(saved.User))
	if err != nil {
		return fmt.Errorf("%s: identity: %w", inst.Domain, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: identity: exit %d: %s", inst.Domain, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}
