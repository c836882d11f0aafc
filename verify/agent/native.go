package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Each function here writes what the check's shell probe (verify's
// checks.go) would print, or says it cannot (false): then the probe runs.
// They answer the common case exactly and leave every odd one to the shell.

// ContentMarker separates a file probe's facts from the file's head.
const ContentMarker = "--- content"

// FileContentLimit is how much of a file a contains check reads.
const FileContentLimit = 1 << 20

// fileFacts is: exists=…, then stat's mode/owner/uid/group/gid of the
// path itself (stat does not follow a link), its SELinux context, and the
// first MiB of what it names.
func fileFacts(n *Native) (string, bool) {
	target, err := os.Stat(n.Arg)
	if err != nil {
		if os.IsNotExist(err) {
			return "exists=false\n", true
		}
		return "", false // test -e says false for more than that; let it
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.Arg, &st); err != nil {
		return "", false
	}
	uid, gid := strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	// Names from /etc/passwd and /etc/group (the agent is static: no NSS);
	// an account from a directory service is the probe's to name.
	u, uerr := user.LookupId(uid)
	g, gerr := user.LookupGroupId(gid)
	if uerr != nil || gerr != nil {
		return "", false
	}
	owner, group := u.Username, g.Name
	var b strings.Builder
	fmt.Fprintf(&b, "exists=true\nmode=%o owner=%s uid=%s group=%s gid=%s\n", st.Mode&0o7777, owner, uid, group, gid)
	if n.SELinux {
		b.WriteString("selinux=" + selinuxContext(n.Arg) + "\n")
	}
	if n.Contents {
		// Only a regular file is read here: a FIFO or a device could block
		// where the probe has its timeout.
		if !target.Mode().IsRegular() {
			return "", false
		}
		f, err := os.Open(n.Arg)
		if err != nil {
			return "", false
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, FileContentLimit))
		if err != nil {
			return "", false // a directory: head's own error, from the probe
		}
		b.WriteString(ContentMarker + "\n")
		b.Write(data)
	}
	return b.String(), true
}

// selinuxContext is the path's own label (not its link target's), "?"
// when it has none, as `stat -c %C 2>/dev/null` gives it.
func selinuxContext(path string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, "security.selinux", buf)
	if err != nil {
		return "?"
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

// sysctlValue is `sysctl -n KEY`: the value as the kernel prints it.
func sysctlValue(key string) (string, bool) {
	if !sysctlKey.MatchString(key) {
		return "", false
	}
	data, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	if err != nil || len(data) == 0 {
		return "", false // sysctl's own error, from the probe
	}
	return string(data), true
}

var sysctlKey = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_-]+)+$`)

// listening is `ss -H -ltn 'sport = :PORT'` (or -lun): one line per socket
// listening on the port, in ss's columns.
func listening(proto, port string) (string, bool) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", false
	}
	state, name := "0A", "LISTEN" // TCP_LISTEN
	if proto == "udp" {
		state, name = "07", "UNCONN" // TCP_CLOSE: an unconnected UDP socket
	} else if proto != "tcp" && proto != "" {
		return "", false
	}
	if proto == "" {
		proto = "tcp"
	}
	var b strings.Builder
	for _, file := range []string{"/proc/net/" + proto, "/proc/net/" + proto + "6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			if os.IsNotExist(err) && strings.HasSuffix(file, "6") {
				continue // no IPv6
			}
			return "", false
		}
		for _, l := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) < 4 || f[3] != state {
				continue
			}
			addr, lport, ok := procAddr(f[1])
			if !ok {
				return "", false
			}
			if lport == uint16(p) {
				fmt.Fprintf(&b, "%s 0 0 %s:%d %s:*\n", name, addr, lport, wildcard(addr))
			}
		}
	}
	return b.String(), true
}

// procAddr decodes /proc/net/tcp's "0100007F:0016" (the address in host
// byte order, 32-bit words) as ss shows it: 127.0.0.1, [::], [::1].
func procAddr(s string) (string, uint16, bool) {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", 0, false
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if len(raw) == 4 {
		return ip.String(), uint16(port), true
	}
	if v4 := ip.To4(); v4 != nil && !ip.Equal(net.IPv6unspecified) {
		return "[::ffff:" + v4.String() + "]", uint16(port), true
	}
	return "[" + ip.String() + "]", uint16(port), true
}

func wildcard(addr string) string {
	if strings.HasPrefix(addr, "[") {
		return "[::]"
	}
	return "0.0.0.0"
}

// dpkgStatus is dpkg's status file, read once a round: package name to
// its instances' "Status-Abbrev Version".
type dpkgStatus struct {
	ok   bool
	pkgs map[string][]string
}

var dpkgStatusFile = "/var/lib/dpkg/status"

func readDpkgStatus() *dpkgStatus {
	s := &dpkgStatus{pkgs: map[string][]string{}}
	data, err := os.ReadFile(dpkgStatusFile)
	if err != nil {
		return s
	}
	for _, stanza := range bytes.Split(data, []byte("\n\n")) {
		var name, status, version string
		sc := bufio.NewScanner(bytes.NewReader(stanza))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "Package":
				name = v
			case "Status":
				status = v
			case "Version":
				version = v
			}
		}
		if name == "" {
			continue
		}
		abbrev, ok := statusAbbrev(status)
		if !ok {
			return s // a status this reader does not know: dpkg-query answers
		}
		s.pkgs[name] = append(s.pkgs[name], abbrev+" "+version)
	}
	s.ok = true
	return s
}

// statusAbbrev is dpkg-query's ${db:Status-Abbrev}: want, status, and
// error flag (a space when ok), from "install ok installed".
func statusAbbrev(status string) (string, bool) {
	f := strings.Fields(status)
	if len(f) != 3 {
		return "", false
	}
	want := map[string]string{"unknown": "u", "install": "i", "hold": "h", "deinstall": "r", "purge": "p"}[f[0]]
	errFlag := map[string]string{"ok": " ", "reinstreq": "R"}[f[1]]
	st := map[string]string{"not-installed": "n", "config-files": "c", "half-installed": "H", "unpacked": "U",
		"half-configured": "F", "triggers-awaited": "W", "triggers-pending": "t", "installed": "i"}[f[2]]
	if want == "" || errFlag == "" || st == "" {
		return "", false
	}
	return want + st + errFlag, true
}

var packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// query is the package probe's output on a dpkg host: "dpkg", then
// dpkg-query -W's line per instance of the package.
func (s *dpkgStatus) query(name string) (string, bool) {
	if !s.ok || !packageName.MatchString(name) {
		return "", false
	}
	lines := s.pkgs[name]
	if len(lines) == 0 {
		return "dpkg\ndpkg-query: no packages found matching " + name + "\n", true
	}
	return "dpkg\n" + strings.Join(lines, "\n") + "\n", true
}

// unitState is what systemctl is-active and is-enabled print for a unit.
type unitState struct{ active, enabled string }

var unitName = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)

// serviceStates asks systemd once for every service check of items
// (one systemctl instead of two per check). A unit whose Id is not the
// name asked is an alias (is-enabled says "alias" of it, show does not):
// it is left to the probe, as is everything when systemctl fails.
func serviceStates(ctx context.Context, items []Item) map[string]unitState {
	var names []string
	for _, it := range items {
		if it.Native != nil && it.Native.Kind == "service" && unitName.MatchString(it.Native.Arg) && !strings.HasPrefix(it.Native.Arg, "-") {
			names = append(names, it.Native.Arg)
		}
	}
	if len(names) == 0 {
		return nil
	}
	args := append([]string{"show", "--property=Id,ActiveState,UnitFileState", "--"}, names...)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	if err != nil {
		return nil
	}
	blocks := strings.Split(strings.TrimRight(string(out), "\n"), "\n\n")
	if len(blocks) != len(names) {
		return nil
	}
	states := map[string]unitState{}
	for i, blk := range blocks {
		kv := map[string]string{}
		for _, l := range strings.Split(blk, "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				kv[k] = v
			}
		}
		want := names[i]
		if !strings.Contains(want, ".") {
			want += ".service"
		}
		if kv["Id"] != want || kv["ActiveState"] == "" {
			continue
		}
		states[names[i]] = unitState{active: kv["ActiveState"], enabled: kv["UnitFileState"]}
	}
	return states
}
