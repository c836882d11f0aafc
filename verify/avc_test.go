package verify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The command runs here in sh over files that stand in for the guest's
// audit log and kernel log; the gate itself runs on real guests in the
// end-to-end tests.
func TestDenialsCommand(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.log")
	kernel := filepath.Join(dir, "kernel.log")
	os.WriteFile(audit, []byte(`type=AVC msg=audit(1.0:1): avc:  denied  { read } for  pid=9 comm="runcon" scontext=a tcontext=b tclass=file
type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=2
type=USER_AVC msg=audit(1.0:2): pid=1 uid=0 msg='avc:  denied  { status } for auid=n/a comm="systemd"'
`), 0o644)
	os.WriteFile(kernel, []byte(`Linux version 6.1.0
audit: type=1400 audit(0.5:3): avc:  denied  { search } for  pid=226 comm="systemd-udevd" name="fs" tclass=dir permissive=0
audit: type=1403 audit(0.4:2): auid=4294967295 ses=4294967295 lsm=selinux res=1
`), 0o644)
	run := func(kernelLog string, accept ...string) []string {
		t.Helper()
		out, err := exec.Command("sh", "-c", denialsCommand(audit, kernelLog, accept)).Output()
		if err != nil {
			t.Fatalf("%v", err)
		}
		return Denials(string(out))
	}
	if got := run("cat " + kernel); len(got) != 3 {
		t.Fatalf("want the two audit-log denials and the early-boot one, got %q", got)
	}
	if got := run("cat "+kernel, `comm="systemd-udevd"`, `comm="systemd"`); len(got) != 1 || !strings.Contains(got[0], `comm="runcon"`) {
		t.Fatalf("accepted denials still counted: %q", got)
	}
	// A guest without journald or dmesg still has its audit log read.
	if got := run("false"); len(got) != 2 {
		t.Fatalf("without a kernel log: %q", got)
	}
}
