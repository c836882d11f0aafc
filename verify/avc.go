package verify

import (
	"strings"

	"github.com/labforge/labforge/internal/runx"
)

// AuditLog is where auditd writes the kernel's SELinux denials once it runs.
const AuditLog = "/var/log/audit/audit.log"

// DenialsCommand prints every SELinux denial the host logged except those
// containing one of accept's strings. A sealed image starts with an empty
// log, so on a booted host this is every denial since its first boot.
// Denials from before auditd starts (early boot: udev, tmpfiles) reach only
// the kernel log, so this boot's kernel log is read as well: once auditd
// runs, the kernel hands denials to it alone, so none is counted twice.
func DenialsCommand(accept []string) string {
	return denialsCommand(AuditLog, "journalctl -k -b -o cat --no-pager 2>/dev/null || dmesg 2>/dev/null", accept)
}

func denialsCommand(auditLog, kernelLog string, accept []string) string {
	cmd := "{ grep -h -e 'avc:  denied' -e 'type=USER_AVC' " + auditLog + " 2>/dev/null; " +
		"{ " + kernelLog + "; } | grep -e 'avc:  denied'; }"
	if len(accept) > 0 {
		cmd += " | grep -v -F"
		for _, a := range accept {
			cmd += " -e " + runx.Quote(a)
		}
	}
	return cmd + " || true"
}

// AVCCheck fails when the host logged a denial the image does not accept.
func AVCCheck(accept []string) Check {
	zero := 0
	return Check{
		Name:    "no unaccepted SELinux denials",
		Type:    TypeCommand,
		Command: DenialsCommand(accept),
		Stdout:  MustRegexp(`\A\s*\z`),
		Retries: &zero,
		Barrier: true,
		Hint:    "each line is a denial: fix the policy module, or list it under avc: in the spec with a reason",
	}
}

// Denials splits DenialsCommand's output into lines.
func Denials(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
