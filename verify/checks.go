package verify

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/verify/agent"
)

// probe is a check turned into one shell command for the guest and a
// function that judges its output on the host. Judging on the host keeps
// the guest side to plain POSIX sh and core tools, and lets Go regexps be
// used everywhere.
type probe struct {
	cmd string
	// eval reports whether the check passed, and a one-line message: what
	// was seen when it passed, want vs got when it did not.
	eval func(Result) (bool, string)
}

// ShellCommand is the command the check runs on the host (for tools that
// time the same work run another way).
func (c *Check) ShellCommand() (string, error) {
	p, err := c.probe()
	return p.cmd, err
}

func (c *Check) probe() (probe, error) {
	if err := c.validateFields(); err != nil {
		return probe{}, fmt.Errorf("invalid check: %s: %s", err.field, err.msg)
	}
	switch c.Type {
	case TypeCommand:
		return commandProbe(c), nil
	case TypeFile:
		return fileProbe(c), nil
	case TypeService:
		return serviceProbe(c), nil
	case TypePackage:
		return packageProbe(c), nil
	case TypeSysctl:
		return sysctlProbe(c), nil
	default: // TypePort; validateFields rejected anything else
		return portProbe(c), nil
	}
}

func commandProbe(c *Check) probe {
	want := 0
	if c.Exit != nil {
		want = *c.Exit
	}
	return probe{c.Command, func(r Result) (bool, string) {
		if r.ExitCode != want {
			msg := fmt.Sprintf("exit status %d, want %d", r.ExitCode, want)
			// A check that explains itself on stdout (echo why; exit 1)
			// is shown with its last word when it wrote nothing to stderr.
			if s := firstLine(r.Stderr); s != "" {
				msg += ": " + s
			} else if s := lastLine(r.Stdout); s != "" {
				msg += ": " + s
			}
			return false, msg
		}
		if c.Stdout != nil && !c.Stdout.MatchString(r.Stdout) {
			if c.Secret {
				return false, fmt.Sprintf("stdout: not what this check wants, got %s", quote(r.Stdout))
			}
			return false, fmt.Sprintf("stdout: want match for %q, got %s", c.Stdout, quote(r.Stdout))
		}
		if s := firstLine(r.Stdout); s != "" {
			return true, s
		}
		return true, fmt.Sprintf("exit status %d", r.ExitCode)
	}}
}

// A contains check reads at most agent.FileContentLimit, so that pointing
// one at a large file does not stream it all over the connection; the
// agent's in-process answer and the probe share the limit and the marker.
const (
	fileContentLimit = agent.FileContentLimit
	contentMarker    = agent.ContentMarker
)

func fileProbe(c *Check) probe {
	cmd := "f=" + runx.Quote(c.File) + `; if [ ! -e "$f" ]; then echo exists=false; exit 0; fi; ` +
		`echo exists=true; stat -c 'mode=%a owner=%U uid=%u group=%G gid=%g' -- "$f" || exit`
	if c.SELinux != "" {
		// stat prints "?" for an unlabelled file, and fails; keep going.
		cmd += `; echo "selinux=$(stat -c %C -- "$f" 2>/dev/null)"`
	}
	if c.Contains != nil {
		cmd += fmt.Sprintf(`; echo '%s'; head -c %d -- "$f"`, contentMarker, fileContentLimit)
	}
	wantExists := c.Exists == nil || *c.Exists
	return probe{cmd, func(r Result) (bool, string) {
		head, content, _ := strings.Cut(r.Stdout, contentMarker+"\n")
		kv := keyValues(head)
		if r.ExitCode != 0 || kv["exists"] == "" {
			return false, probeFailed("file probe", r)
		}
		if exists := kv["exists"] == "true"; exists != wantExists {
			if exists {
				return false, c.File + " exists, want absent"
			}
			return false, c.File + " does not exist"
		}
		if !wantExists {
			return true, "absent"
		}
		var bad []string
		mode, err := strconv.ParseUint(kv["mode"], 8, 32)
		if c.Mode != nil && (err != nil || FileMode(mode) != *c.Mode) {
			bad = append(bad, fmt.Sprintf("mode: want %s, got %s", *c.Mode, FileMode(mode)))
		}
		if c.Owner != "" && c.Owner != kv["owner"] && c.Owner != kv["uid"] {
			bad = append(bad, fmt.Sprintf("owner: want %s, got %s", c.Owner, kv["owner"]))
		}
		if c.Group != "" && c.Group != kv["group"] && c.Group != kv["gid"] {
			bad = append(bad, fmt.Sprintf("group: want %s, got %s", c.Group, kv["group"]))
		}
		if c.SELinux != "" {
			if re, _ := selinuxPattern(c.SELinux); !re.MatchString(kv["selinux"]) {
				bad = append(bad, fmt.Sprintf("selinux: want %s, got %s", c.SELinux, kv["selinux"]))
			}
		}
		if c.Contains != nil && !c.Contains.MatchString(content) {
			bad = append(bad, fmt.Sprintf("content: no match for %q", c.Contains))
		}
		if len(bad) > 0 {
			return false, strings.Join(bad, "; ")
		}
		return true, fmt.Sprintf("%s %s:%s", FileMode(mode), kv["owner"], kv["group"])
	}}
}

// selinuxPattern matches a whole security context. A bare type such as
// "etc_t" (no colon) matches the type field only, since that is the part
// people usually care about; anything else is a regexp for the context.
func selinuxPattern(s string) (*regexp.Regexp, error) {
	if !strings.Contains(s, ":") {
		return regexp.Compile(`^[^:]*:[^:]*:(?:` + s + `)(?::.*)?$`)
	}
	return regexp.Compile(`^(?:` + s + `)$`)
}

// enabledStates are the is-enabled answers that mean the unit starts at
// boot; "static" and "alias" say nothing about that and count as not.
var enabledStates = map[string]bool{"enabled": true, "enabled-runtime": true}

func serviceProbe(c *Check) probe {
	cmd := "u=" + runx.Quote(c.Service) + `; echo "active=$(systemctl is-active -- "$u" 2>/dev/null)"; ` +
		`echo "enabled=$(systemctl is-enabled -- "$u" 2>/dev/null)"`
	wantActive := c.Active == nil || *c.Active
	return probe{cmd, func(r Result) (bool, string) {
		kv := keyValues(r.Stdout)
		active, enabled := orUnknown(kv["active"]), orUnknown(kv["enabled"])
		var bad []string
		if (active == "active") != wantActive {
			bad = append(bad, fmt.Sprintf("is-active: want %s, got %s", yesNo(wantActive, "active", "not active"), active))
		}
		if c.Enabled != nil && enabledStates[enabled] != *c.Enabled {
			bad = append(bad, fmt.Sprintf("is-enabled: want %s, got %s", yesNo(*c.Enabled, "enabled", "not enabled"), enabled))
		}
		if len(bad) > 0 {
			return false, strings.Join(bad, "; ")
		}
		return true, active + ", " + enabled
	}}
}

// orUnknown names an empty answer: is-enabled prints nothing for a missing
// unit, and neither prints anything without systemctl or a running systemd.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// packageProbe prefers dpkg-query and falls back to rpm, printing which one
// answered first. rpm's format prints the epoch the way dpkg does (only when
// set), so a version pattern reads the same on both families.
func packageProbe(c *Check) probe {
	p := runx.Quote(c.Package)
	cmd := `if command -v dpkg-query >/dev/null 2>&1; then echo dpkg; dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' -- ` + p + ` 2>&1; ` +
		`elif command -v rpm >/dev/null 2>&1; then echo rpm; rpm -q --qf '%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n' -- ` + p + ` 2>&1; ` +
		`else echo none; fi`
	return probe{cmd, func(r Result) (bool, string) {
		tool, out, _ := strings.Cut(r.Stdout, "\n")
		var versions []string
		for _, l := range strings.Split(out, "\n") {
			switch f := strings.Fields(l); {
			case tool == "dpkg" && len(f) == 2 && len(f[0]) >= 2 && f[0][1] == 'i':
				// Status-Abbrev is want+status(+error); status 'i' is installed.
				versions = append(versions, f[1])
			case tool == "rpm" && len(f) == 1:
				versions = append(versions, f[0])
			}
		}
		switch {
		case tool != "dpkg" && tool != "rpm":
			return false, "neither dpkg-query nor rpm found"
		case len(versions) == 0:
			return false, c.Package + " is not installed"
		case c.Version == nil:
			return true, strings.Join(versions, ", ")
		}
		for _, v := range versions {
			if c.Version.MatchString(v) {
				return true, v
			}
		}
		return false, fmt.Sprintf("version: want match for %q, got %s", c.Version, strings.Join(versions, ", "))
	}}
}

func sysctlProbe(c *Check) probe {
	return probe{"sysctl -n -- " + runx.Quote(c.Sysctl), func(r Result) (bool, string) {
		if r.ExitCode != 0 {
			return false, probeFailed("sysctl", r)
		}
		// Multi-value keys are tab-separated; compare them word by word.
		got := strings.Join(strings.Fields(r.Stdout), " ")
		if c.Value != nil {
			if want := strings.Join(strings.Fields(*c.Value), " "); got != want {
				return false, fmt.Sprintf("%s: want %q, got %q", c.Sysctl, want, got)
			}
		}
		return true, c.Sysctl + " = " + got
	}}
}

func portProbe(c *Check) probe {
	proto := c.Proto
	if proto == "" {
		proto = "tcp"
	}
	flags := map[string]string{"tcp": "-H -ltn", "udp": "-H -lun"}[proto]
	port := strconv.Itoa(c.Port)
	cmd := fmt.Sprintf("ss %s 'sport = :%s'", flags, port)
	return probe{cmd, func(r Result) (bool, string) {
		if r.ExitCode != 0 {
			return false, probeFailed("ss", r)
		}
		// Columns: State Recv-Q Send-Q Local:Port Peer:Port [...]; the
		// local address may be 0.0.0.0:22, [::]:22, *:22 or 127.0.0.1%lo:53.
		var addrs []string
		for _, l := range strings.Split(r.Stdout, "\n") {
			if f := strings.Fields(l); len(f) >= 5 {
				if i := strings.LastIndex(f[3], ":"); i >= 0 && f[3][i+1:] == port {
					addrs = append(addrs, f[3])
				}
			}
		}
		if len(addrs) == 0 {
			return false, fmt.Sprintf("nothing listening on %s port %s", proto, port)
		}
		return true, proto + " " + strings.Join(addrs, ", ")
	}}
}

// keyValues parses "k=v" words, any number to a line.
func keyValues(s string) map[string]string {
	kv := map[string]string{}
	for _, w := range strings.Fields(s) {
		if k, v, ok := strings.Cut(w, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func probeFailed(what string, r Result) string {
	msg := fmt.Sprintf("%s failed (exit status %d)", what, r.ExitCode)
	if s := firstLine(r.Stderr); s != "" {
		return msg + ": " + s
	}
	if s := firstLine(r.Stdout); s != "" {
		return msg + ": " + s
	}
	return msg
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return truncate(strings.TrimSpace(l), 120)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return truncate(strings.TrimSpace(s[strings.LastIndexByte(s, '\n')+1:]), 120)
}

// quote shows command output in a message: trimmed, escaped, short.
func quote(s string) string {
	return truncate(strconv.Quote(strings.TrimSpace(s)), 80)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
