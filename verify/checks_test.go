package verify

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandCheck(t *testing.T) {
	wantPass(t, runOne(t, "  - {name: echo, command: 'echo hello; echo world', stdout: '^world$'}\n"))
	wantPass(t, runOne(t, "  - {name: exit 3, command: 'exit 3', exit: 3}\n"))
	wantFail(t, runOne(t, "  - {name: exit, command: 'echo oops >&2; exit 2'}\n"), "exit status 2, want 0: oops")
	wantFail(t, runOne(t, "  - {name: why, command: 'echo looked; echo because; exit 1'}\n"), "exit status 1, want 0: because")
	wantFail(t, runOne(t, "  - {name: stdout, command: 'echo Permissive', stdout: '^Enforcing$'}\n"),
		`stdout: want match for "^Enforcing$", got "Permissive"`)
}

// A secret check (a course's) says it failed without what it wanted.
func TestSecretCheckHidesWant(t *testing.T) {
	c := Check{Name: "s", Type: TypeCommand, Command: "echo Permissive", Stdout: MustRegexp("^Enforcing$"), Secret: true}
	p, err := c.probe()
	if err != nil {
		t.Fatal(err)
	}
	ok, msg := p.eval(Result{Stdout: "Permissive\n"})
	if ok || strings.Contains(msg, "Enforcing") || !strings.Contains(msg, `not what this check wants, got "Permissive"`) {
		t.Fatalf("secret check: %v %q", ok, msg)
	}
}

func TestFileCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(path, []byte("Port 22\nPermitRootLogin no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}

	check := func(name, extra string) CheckResult {
		return runOne(t, fmt.Sprintf("  - name: %s\n    file: %s\n%s", name, path, extra))
	}
	r := check("all", fmt.Sprintf("    mode: \"0640\"\n    owner: %s\n    group: %s\n    contains: ^PermitRootLogin no$\n", me.Username, grp.Name))
	wantPass(t, r)
	if want := fmt.Sprintf("0640 %s:%s", me.Username, grp.Name); r.Message != want {
		t.Errorf("message = %q, want %q", r.Message, want)
	}
	wantPass(t, check("numeric owner", fmt.Sprintf("    owner: %q\n    group: %q\n", me.Uid, me.Gid)))
	wantFail(t, check("mode", "    mode: \"0600\"\n"), "mode: want 0600, got 0640")
	wantFail(t, check("owner and content", "    owner: nobody-here\n    contains: ^PermitRootLogin yes\n"),
		`owner: want nobody-here, got `+me.Username+`; content: no match for "^PermitRootLogin yes"`)
	wantFail(t, check("exists false", "    exists: false\n"), "exists, want absent")

	missing := filepath.Join(dir, "it's missing") // a quote, to exercise shell quoting
	wantPass(t, runOne(t, fmt.Sprintf("  - name: absent\n    file: %q\n    exists: false\n", missing)))
	wantFail(t, runOne(t, fmt.Sprintf("  - name: missing\n    file: %q\n", missing)), "does not exist")
}

func TestFileSELinux(t *testing.T) {
	// This machine has no SELinux, so stat reports "?" and a type check
	// fails with a message that says so.
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runOne(t, fmt.Sprintf("  - name: label\n    file: %s\n    selinux: etc_t\n", path))
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		t.Skip("SELinux is enabled here; labels vary")
	}
	wantFail(t, r, "selinux: want etc_t, got ?")
}

func TestSysctlCheck(t *testing.T) {
	if _, err := exec.LookPath("sysctl"); err != nil {
		t.Skip("no sysctl")
	}
	wantPass(t, runOne(t, "  - {name: ostype, sysctl: kernel.ostype, value: Linux}\n"))
	wantFail(t, runOne(t, "  - {name: ostype, sysctl: kernel.ostype, value: Plan9}\n"), `kernel.ostype: want "Plan9", got "Linux"`)
	wantFail(t, runOne(t, "  - {name: missing, sysctl: kernel.no_such_key}\n"), "sysctl failed (exit status")

	// Multi-value keys are compared word by word, whatever the separator.
	out, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip(err)
	}
	words := strings.Fields(string(out))
	wantPass(t, runOne(t, fmt.Sprintf("  - {name: range, sysctl: net/ipv4/ip_local_port_range, value: '%s    %s'}\n", words[0], words[1])))
}

func TestPortCheck(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("no ss")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	r := runOne(t, fmt.Sprintf("  - {name: tcp, port: %d}\n", port))
	wantPass(t, r)
	if want := fmt.Sprintf("tcp 127.0.0.1:%d", port); r.Message != want {
		t.Errorf("message = %q, want %q", r.Message, want)
	}
	wantFail(t, runOne(t, fmt.Sprintf("  - {name: udp, port: %d, proto: udp}\n", port)), fmt.Sprintf("nothing listening on udp port %d", port))
	l.Close()
	wantFail(t, runOne(t, fmt.Sprintf("  - {name: closed, port: %d}\n", port)), fmt.Sprintf("nothing listening on tcp port %d", port))

	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	wantPass(t, runOne(t, fmt.Sprintf("  - {name: udp, port: %d, proto: udp}\n", u.LocalAddr().(*net.UDPAddr).Port)))
}

func TestPackageCheck(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a dpkg system")
	}
	r := runOne(t, "  - {name: bash, package: bash, version: '^[0-9]+\\.'}\n")
	wantPass(t, r)
	wantFail(t, runOne(t, "  - {name: old bash, package: bash, version: '^1:'}\n"), `version: want match for "^1:", got `+r.Message)
	wantFail(t, runOne(t, "  - {name: none, package: labforge-no-such-package}\n"), "labforge-no-such-package is not installed")
}

// The guest families differ in what they print; these are their real
// answers, judged without running anything.
func TestPackageParse(t *testing.T) {
	c := &Check{Name: "ssh", Type: TypePackage, Package: "openssh-server", Version: MustRegexp(`^1:9`)}
	p, err := c.probe()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		out  string
		ok   bool
		want string
	}{
		{"dpkg\nii  1:9.2p1-2+deb12u3\n", true, "1:9.2p1-2+deb12u3"},
		{"dpkg\nrc  1:9.2p1-2\n", false, "openssh-server is not installed"}, // removed, config left
		{"dpkg\ndpkg-query: no packages found matching openssh-server\n", false, "not installed"},
		{"dpkg\nii  1:8.4p1-5\n", false, `version: want match for "^1:9", got 1:8.4p1-5`},
		{"rpm\n1:9.9p1-7.el10\n", true, "1:9.9p1-7.el10"},
		{"rpm\npackage openssh-server is not installed\n", false, "not installed"},
		{"none\n", false, "neither dpkg-query nor rpm found"},
	} {
		ok, msg := p.eval(Result{Stdout: tt.out})
		if ok != tt.ok || !strings.Contains(msg, tt.want) {
			t.Errorf("eval(%q) = %v, %q; want %v, %q", tt.out, ok, msg, tt.ok, tt.want)
		}
	}
}

// No systemd here: check the command and judge systemctl's answers.
func TestServiceParse(t *testing.T) {
	yes, no := true, false
	c := &Check{Name: "sshd", Type: TypeService, Service: "ssh", Enabled: &yes}
	p, err := c.probe()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"u='ssh'", `systemctl is-active -- "$u"`, `systemctl is-enabled -- "$u"`} {
		if !strings.Contains(p.cmd, want) {
			t.Errorf("command %q lacks %q", p.cmd, want)
		}
	}
	for _, tt := range []struct {
		out  string
		ok   bool
		want string
	}{
		{"active=active\nenabled=enabled\n", true, "active, enabled"},
		{"active=inactive\nenabled=enabled\n", false, "is-active: want active, got inactive"},
		{"active=active\nenabled=static\n", false, "is-enabled: want enabled, got static"},
		{"active=inactive\nenabled=\n", false, "is-active: want active, got inactive; is-enabled: want enabled, got unknown"},
	} {
		ok, msg := p.eval(Result{Stdout: tt.out})
		if ok != tt.ok || msg != tt.want {
			t.Errorf("eval(%q) = %v, %q; want %v, %q", tt.out, ok, msg, tt.ok, tt.want)
		}
	}

	c = &Check{Name: "telnet off", Type: TypeService, Service: "telnet.socket", Active: &no, Enabled: &no}
	if p, err = c.probe(); err != nil {
		t.Fatal(err)
	}
	if ok, msg := p.eval(Result{Stdout: "active=inactive\nenabled=disabled\n"}); !ok {
		t.Errorf("inactive, disabled unit failed active: false, enabled: false: %s", msg)
	}
	if ok, msg := p.eval(Result{Stdout: "active=active\nenabled=disabled\n"}); ok || msg != "is-active: want not active, got active" {
		t.Errorf("active unit: %v, %q", ok, msg)
	}
}

// The service command runs as-is on this machine too: without systemd it
// must still answer, with the state reported as unknown.
func TestServiceCommandRuns(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is running here")
	}
	// A unit no machine has: openssh-server may be installed here (the
	// two-hypervisor class test runs its own sshd) and ssh.service enabled.
	wantFail(t, runOne(t, "  - {name: absent, service: labforge-no-such-unit, enabled: true}\n"), "is-active: want active, got unknown; is-enabled")
}
