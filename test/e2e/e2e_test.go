// Package e2e drives the labforge binary as a user would, against the real
// system libvirtd, QEMU (TCG where KVM does not run guests) and a real guest.
// It needs root and is skipped by `go test -short`.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jstemmer/go-junit-report/v2/junit"
	"github.com/labforge/labforge/internal/instance"
)

var (
	bin  string // the labforge binary under test
	root string // the repository, where the default spec is found
)

// TestMain builds the binary under test into the checkout's bin/ (ignored
// by git), not a temporary folder: go test's own timeout panics past any
// clean-up, and left folders would pile up in /tmp.
func TestMain(m *testing.M) {
	root, _ = filepath.Abs("../..")
	bin = filepath.Join(root, "bin", "labforge-e2e")
	// -short runs this package's few tests that boot nothing: no binary.
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/labforge").CombinedOutput()
	// The guest agent and the course's program beside it, where labforge
	// looks for them.
	for _, prog := range []string{"labforge-guest", "labforge-labs"} {
		if err != nil {
			break
		}
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(root, "bin", prog), "../../cmd/"+prog)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err = build.CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build labforge: %v\n%s", err, out)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: boots real VMs")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root (debootstrap, system libvirtd)")
	}
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// baseSpec is the small host most tests boot; the lab host has its own test.
const baseSpec = "images/debian-base.yaml"

// labforge runs the binary from the repository root.
func labforge(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, 60*time.Minute, nil, bin, args...)
}

// run runs a program from the repository root with env added to the
// test's own, and fails the test only when it cannot be run at all.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(t0)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", filepath.Base(name), args, err)
	}
	return r
}

// downAfter brings instance name down when the test ends. A failed test
// first logs the end of the guest's console and what the guest says of
// its memory, and keeps the console among the artefacts: a guest that hung
// or panicked tells it there, and `down` removes the instance's directory.
func downAfter(t *testing.T, name string) {
	t.Cleanup(func() {
		if t.Failed() {
			keepConsole(t, name)
		}
		labforge(t, "down", name)
	})
}

func keepConsole(t *testing.T, name string) {
	inst, err := instance.Load(name)
	if err != nil {
		t.Logf("console of %s: %v", name, err)
		return
	}
	b, err := os.ReadFile(inst.ConsolePath())
	if err != nil {
		t.Logf("console of %s: %v", name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("console of %s, its last %d lines:\n%s", name, min(60, len(lines)), strings.Join(lines[max(0, len(lines)-60):], "\n"))
	if art := os.Getenv("LABFORGE_E2E_ARTEFACTS"); art != "" {
		dst := filepath.Join(art, t.Name()+"-"+name+"-console.log")
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err == nil {
			t.Logf("console of %s kept in %s", name, dst)
		}
	}
	r := run(t, 30*time.Second, nil, bin, "ssh", "-n", name, "--", "free -m; uptime; sudo dmesg | tail -n 30")
	t.Logf("the guest %s now (exit %d):\n%s%s", name, r.code, r.stdout, r.stderr)
}

func mustLabforge(t *testing.T, args ...string) result {
	t.Helper()
	r := labforge(t, args...)
	if r.code != 0 {
		// The first line carries the gist: CI logs may keep only that line.
		t.Fatalf("labforge %s: exit %d: %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, gist(r), r.stdout, r.stderr)
	}
	return r
}

// gist folds a failed run's failing checks and last error lines into one line.
func gist(r result) string {
	var parts []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "FAIL") {
			parts = append(parts, strings.Join(strings.Fields(l), " "))
		}
	}
	errs := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	parts = append(parts, errs...)
	s := strings.Join(parts, " | ")
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

func virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %v: %v: %s", args, err, out)
	}
	return string(out)
}

func domains(t *testing.T) string { return virsh(t, "list", "--all", "--name") }

func readJUnit(t *testing.T, path string) junit.Testsuites {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s junit.Testsuites
	if err := xml.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// TestLabHost is the walking skeleton end to end: build (cached), boot,
// verify, log in, a wrong guest caught by verify, and a clean teardown.
func TestLabHost(t *testing.T) {
	needRoot(t)
	const name = "e2e-host"
	dom := "labforge-" + name
	labforge(t, "down", name) // leftovers of an earlier, killed run
	downAfter(t, name)
	tmp := t.TempDir()

	build := mustLabforge(t, "build", baseSpec)
	t.Logf("build (default spec): %s\n%s", build.took.Round(time.Second), build.stdout)
	// The disk of a spec without steps is never booted, and ships sealed.
	ex := mustLabforge(t, "image", "export", baseSpec, "-o", tmp)
	t.Logf("export: %s\n%s", ex.took.Round(time.Second), ex.stdout)
	mustLabforge(t, "image", "verify", filepath.Join(tmp, "debian-base.qcow2"))
	t.Run("the image's and its box's file systems are clean", func(t *testing.T) {
		fileSystemsClean(t, filepath.Join(tmp, "debian-base.qcow2"))
		// The box's disk had the vagrant account written into it (debugfs).
		box := filepath.Join(tmp, "debian-base.box")
		mustLabforge(t, "box", "export", baseSpec, "-o", box)
		if out, err := exec.Command("tar", "-xf", box, "-C", tmp, "box.img").CombinedOutput(); err != nil {
			t.Fatalf("tar -xf %s box.img: %v: %s", box, err, out)
		}
		fileSystemsClean(t, filepath.Join(tmp, "box.img"))
	})

	upJUnit := filepath.Join(tmp, "up.xml")
	up := mustLabforge(t, "up", baseSpec, "--name", name, "--junit", upJUnit)
	t.Logf("labforge up: %s\n%s", up.took.Round(time.Second), up.stdout)
	if m := regexp.MustCompile(`SSH-ready in ([0-9.]+m?[0-9.]*s)`).FindStringSubmatch(up.stdout); m != nil {
		t.Logf("FIGURE up-to-SSH-ready: %s", m[1])
	}
	for _, s := range readJUnit(t, upJUnit).Suites {
		if s.Failures != 0 || s.Tests == 0 {
			t.Fatalf("verify after up: %d tests, %d failures", s.Tests, s.Failures)
		}
	}
	// Its checks ran through the guest agent, not scripts.
	if !strings.Contains(up.stdout+up.stderr, "checks, guest agent") {
		t.Errorf("up's verify did not use the guest agent:\n%s\n%s", up.stdout, up.stderr)
	}

	t.Run("ssh runs a command on the guest", func(t *testing.T) {
		r := mustLabforge(t, "ssh", "-n", name, "--", "uname", "-a")
		if !strings.HasPrefix(r.stdout, "Linux "+name+" ") || !strings.Contains(r.stdout, "x86_64") {
			t.Fatalf("uname -a printed %q", r.stdout)
		}
		r = labforge(t, "ssh", "-n", name, "--", "exit", "7")
		if r.code != 7 {
			t.Fatalf("remote exit 7 gave %d", r.code)
		}
		a := mustLabforge(t, "ssh", "-n", name, "--", "systemd-analyze")
		t.Logf("FIGURE guest systemd-analyze: %s", strings.TrimSpace(strings.SplitN(a.stdout, "\n", 2)[0]))
	})

	t.Run("verify leaves nothing on the guest", func(t *testing.T) {
		r := mustLabforge(t, "ssh", "-n", name, "--", "sudo find /tmp /var/tmp -maxdepth 1 -name '.labforge-*'")
		if strings.TrimSpace(r.stdout) != "" {
			t.Fatalf("verify's batches left %q", r.stdout)
		}
	})

	t.Run("disk boots with firmware only", func(t *testing.T) {
		x := virsh(t, "dumpxml", dom)
		if strings.Contains(x, "<kernel>") || strings.Contains(x, "<initrd>") {
			t.Fatal("the host supplies a kernel")
		}
		if !strings.Contains(x, "type='pflash'") || !strings.Contains(x, "OVMF") {
			t.Fatalf("no OVMF pflash loader in:\n%s", x)
		}
		// systemd-boot, loaded from the disk's own ESP, leaves its mark in
		// an EFI variable that the guest kernel shows.
		r := mustLabforge(t, "ssh", "-n", name, "--", "ls /sys/firmware/efi/efivars/ | grep -c '^LoaderInfo-'")
		if strings.TrimSpace(r.stdout) != "1" {
			t.Fatalf("no LoaderInfo EFI variable: the guest was not booted by the disk's systemd-boot (%q)", r.stdout)
		}
	})

	t.Run("ssh forward binds loopback only", func(t *testing.T) {
		x := virsh(t, "dumpxml", dom)
		if !regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:\d+-:22`).MatchString(x) {
			t.Fatalf("forward not on 127.0.0.1:\n%s", x)
		}
	})

	t.Run("the guest reaches nothing of the hypervisor", func(t *testing.T) { guestReachesNoHost(t, name) })

	t.Run("instance files are root's and the hypervisor's only", func(t *testing.T) { instanceFilesPrivate(t, name) })
	t.Run("cache files with a guest's secrets are root's and the hypervisor's only", cacheFilesPrivate)

	t.Run("verify fails on a wrong guest", func(t *testing.T) {
		mustLabforge(t, "ssh", "-n", name, "--", "sudo", "setenforce", "0")
		bad := filepath.Join(tmp, "bad.xml")
		r := labforge(t, "verify", "-n", name, "--junit", bad, "--timeout", "15s")
		if r.code == 0 {
			t.Fatalf("verify passed on a permissive guest:\n%s", r.stdout)
		}
		if !strings.Contains(r.stderr, "selinux enforcing") {
			t.Fatalf("stderr does not name the failing check: %q", r.stderr)
		}
		var failed []string
		for _, s := range readJUnit(t, bad).Suites {
			for _, tc := range s.Testcases {
				if tc.Failure != nil {
					failed = append(failed, tc.Name)
				}
			}
		}
		if len(failed) != 1 || failed[0] != "selinux enforcing" {
			t.Fatalf("JUnit failures %v, want exactly [selinux enforcing]", failed)
		}
		mustLabforge(t, "ssh", "-n", name, "--", "sudo", "setenforce", "1")
		mustLabforge(t, "verify", "-n", name)
	})

	t.Run("keys: student key private, a guest that refuses the key", func(t *testing.T) {
		key := filepath.Join(stateDir(), "instances", name, "id_ed25519")
		st, err := os.Stat(key)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("client key %s: %v, mode %v; want 0600", key, err, st.Mode().Perm())
		}
		orig, _ := os.ReadFile(key)
		defer os.WriteFile(key, orig, 0o600)
		// Another valid key, which the guest never authorised.
		kdir := t.TempDir()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(kdir, "k")).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		data, _ := os.ReadFile(filepath.Join(kdir, "k"))
		if err := os.WriteFile(key, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := labforge(t, "ssh", "-n", name, "--", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "unable to authenticate") {
			t.Fatalf("want an authentication failure, got exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("a changed host key is refused", func(t *testing.T) {
		path := filepath.Join(stateDir(), "instances", name, "instance.json")
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig, 0o600)
		other := regexp.MustCompile(`"hostKey": "ssh-ed25519 [A-Za-z0-9+/=]+"`).ReplaceAll(orig,
			[]byte(`"hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFzQ4v0yZWr7vVq1nq0l7OBP3Q1+e7m3l1c2p0m2Kx8Z"`))
		if err := os.WriteFile(path, other, 0o600); err != nil {
			t.Fatal(err)
		}
		r := labforge(t, "ssh", "-n", name, "--", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "host key mismatch") {
			t.Fatalf("want a host key mismatch, got exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("secrets never appear in logs", func(t *testing.T) {
		dir := filepath.Join(stateDir(), "instances", name)
		secrets := instanceSecrets(t, name, dir)
		files := append([]string{upJUnit}, logFilesUnder(t, dir)...) // console.log among them
		builds, _ := filepath.Glob(filepath.Join(cacheDir(), "builds", "*", "*.log"))
		files = append(files, builds...)
		// libvirt's log of the domain: the QEMU command line labforge made.
		files = append(files, filepath.Join("/var/log/libvirt/qemu", dom+".log"))
		logs := logsOf(t, files...)
		if _, ok := logs[filepath.Join(dir, "console.log")]; !ok {
			t.Fatal("no console log to check")
		}
		logs["stdout of up"], logs["stderr of up"] = up.stdout, up.stderr
		for where, text := range logs {
			for _, s := range secrets {
				if strings.Contains(text, s.text) {
					t.Errorf("%s holds %s", where, s.what)
				}
			}
		}
		t.Logf("%d logs checked for %d secrets", len(logs), len(secrets))
	})

	// Last, as it reboots the guest: a stopped host keeps the student's work.
	t.Run("a stopped host keeps its disk: up refuses, start boots it", func(t *testing.T) {
		mustLabforge(t, "ssh", "-n", name, "--", "echo my-work > ~/work.txt && sync")
		stop := mustLabforge(t, "stop", name)
		if st := strings.TrimSpace(virsh(t, "domstate", dom)); st != "shut off" {
			t.Fatalf("after stop the domain is %q", st)
		}
		r := labforge(t, "up", baseSpec, "--name", name)
		if r.code == 0 || !strings.Contains(r.stderr, "exists and is stopped") {
			t.Fatalf("up over a stopped instance: exit %d: %s", r.code, r.stderr)
		}
		start := mustLabforge(t, "start", name)
		t.Logf("FIGURE stop %s, start to SSH-ready %s", stop.took.Round(100*time.Millisecond), start.took.Round(100*time.Millisecond))
		if out := mustLabforge(t, "ssh", "-n", name, "--", "cat ~/work.txt").stdout; strings.TrimSpace(out) != "my-work" {
			t.Fatalf("the student's file after stop and start: %q", out)
		}
		// Paused (virsh suspend, or libvirt pausing it on a full disk): up
		// refuses and touches nothing, start resumes it where it was.
		virsh(t, "suspend", dom)
		if r := labforge(t, "up", baseSpec, "--name", name); r.code == 0 || !strings.Contains(r.stderr, "exists and is paused") {
			t.Fatalf("up over a paused instance: exit %d: %s", r.code, r.stderr)
		}
		mustLabforge(t, "start", name)
		if st := strings.TrimSpace(virsh(t, "domstate", dom)); st != "running" {
			t.Fatalf("after start of a paused host the domain is %q", st)
		}
		if out := mustLabforge(t, "ssh", "-n", name, "--", "cat ~/work.txt").stdout; strings.TrimSpace(out) != "my-work" {
			t.Fatalf("the student's file after pause and start: %q", out)
		}
		// A poweroff from inside the guest is the same: nothing is removed.
		labforge(t, "ssh", "-n", name, "--", "sudo systemctl poweroff")
		deadline := time.Now().Add(3 * time.Minute)
		for strings.TrimSpace(virsh(t, "domstate", dom)) != "shut off" {
			if time.Now().After(deadline) {
				t.Fatal("the guest did not power off")
			}
			time.Sleep(2 * time.Second)
		}
		if r := labforge(t, "up", baseSpec, "--name", name); r.code == 0 || !strings.Contains(r.stderr, "exists and is stopped") {
			t.Fatalf("up over a powered-off instance: exit %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(stateDir(), "instances", name, "disk.qcow2")); err != nil {
			t.Fatalf("the disk after a refused up: %v", err)
		}
	})

	down := mustLabforge(t, "down", name)
	t.Logf("labforge down: %s", down.took.Round(100*time.Millisecond))
	if strings.Contains(domains(t), dom) {
		t.Fatalf("domain %s still defined after down", dom)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/labforge/instances", name)); !os.IsNotExist(err) {
		t.Fatalf("instance directory left after down: %v", err)
	}
}

// interruptAt runs up of the base spec as name, sends SIGINT a second
// after the step that starts with prefix begins, and checks that up
// fails and leaves no domain and no instance directory.
func interruptAt(t *testing.T, name, prefix string, args ...string) {
	t.Helper()
	dom := "labforge-" + name
	cmd := exec.Command(bin, append([]string{"up", baseSpec, "--name", name}, args...)...)
	cmd.Dir = root
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), prefix) {
			time.Sleep(time.Second)
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	copied := make(chan struct{})
	go func() { io.Copy(&log, pr); close(copied) }()
	err := cmd.Wait()
	pw.Close()
	<-copied
	t.Logf("up after SIGINT at %q: %v\n%s", prefix, err, log.String())
	if err == nil {
		t.Fatal("up exited 0 after SIGINT")
	}
	if !strings.Contains(log.String(), prefix) {
		t.Fatalf("up never reached %q", prefix)
	}
	if strings.Contains(domains(t), dom) {
		labforge(t, "down", name)
		t.Fatalf("domain %s left after Ctrl-C", dom)
	}
	if _, err := os.Stat(filepath.Join(stateDir(), "instances", name)); !os.IsNotExist(err) {
		t.Fatalf("instance directory left after Ctrl-C: %v", err)
	}
}

// TestInterruptedUp sends Ctrl-C (SIGINT) to `labforge up` while the guest
// boots and checks that no domain and no file is left.
func TestInterruptedUp(t *testing.T) {
	needRoot(t)
	const name = "e2e-int"
	dom := "labforge-" + name
	labforge(t, "down", name)
	mustLabforge(t, "build", baseSpec) // cached by TestLabHost; the boot is what is interrupted
	cmd := exec.Command(bin, "up", baseSpec, "--name", name, "--no-verify", "--cold")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(domains(t), dom) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("domain never appeared:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the guest is booting now
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("up exited 0 after SIGINT:\n%s", out.String())
	}
	t.Logf("up after SIGINT: %v\n%s", err, out.String())
	if strings.Contains(domains(t), dom) {
		labforge(t, "down", name)
		t.Fatalf("domain %s left after Ctrl-C", dom)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/labforge/instances", name)); !os.IsNotExist(err) {
		t.Fatalf("instance directory left after Ctrl-C: %v", err)
	}

	t.Run("Ctrl-C during a restore", func(t *testing.T) {
		// The clone's memory is being written and restored now.
		interruptAt(t, name, "==> restore to SSH-ready", "--no-verify")
	})
	t.Run("Ctrl-C during verify", func(t *testing.T) {
		interruptAt(t, name, "==> verify")
	})

	t.Run("kill -9 during up, then up again", func(t *testing.T) {
		// From cold: a restore may be over before the second up asks.
		cmd := exec.Command(bin, "up", baseSpec, "--name", name, "--no-verify", "--cold")
		cmd.Dir = root
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(domains(t), dom) {
			time.Sleep(200 * time.Millisecond)
		}
		// A second up of the same name while the first holds it is refused.
		r := labforge(t, "up", baseSpec, "--name", name, "--no-verify", "--cold")
		if r.code == 0 || !strings.Contains(r.stderr, "busy") {
			t.Fatalf("concurrent up of one name: exit %d, %s", r.code, r.stderr)
		}
		cmd.Process.Kill()
		cmd.Wait()
		// The killed up left a running domain and a record that never
		// became ready: the next up cleans both and boots afresh.
		// --progress-json: JSON lines only, ending with what was made.
		up := mustLabforge(t, "up", baseSpec, "--name", name, "--no-verify", "--progress-json")
		lines := strings.Split(strings.TrimSpace(up.stdout), "\n")
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Fatalf("up --progress-json printed a line that is not JSON: %q", l)
			}
		}
		if last := lines[len(lines)-1]; !strings.Contains(last, `"event":"result"`) || !strings.Contains(last, `"restored":"debian-base-`) {
			t.Fatalf("up after kill -9 did not end with a restored host's result:\n%s", up.stdout)
		}
		mustLabforge(t, "down", name)
		if strings.Contains(domains(t), dom) {
			t.Fatal("domain left after down")
		}
	})
}
