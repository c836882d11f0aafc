package verify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The agent answers typed checks in-process with what their shell probes
// print: every verdict and message is the same as one exec per check.
func TestAgentTypedChecksMatchProbes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/f", []byte("hello\nworld\n"), 0o4750)
	syscall.Chmod(dir+"/f", 0o4750) // setuid shows in stat's %a
	os.Symlink(dir+"/f", dir+"/link")
	tcp4, _ := net.Listen("tcp4", "127.0.0.1:0")
	defer tcp4.Close()
	tcpPort := tcp4.Addr().(*net.TCPAddr).Port
	if tcp6, err := net.Listen("tcp6", "[::1]:"+strconv.Itoa(tcpPort)); err == nil {
		defer tcp6.Close()
	}
	udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer udp.Close()
	udpPort := udp.LocalAddr().(*net.UDPAddr).Port
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	suite := fmt.Sprintf(`defaults: {timeout: 5s, retries: 0}
checks:
  - {name: file, file: %[1]s/f, mode: "4750", contains: world}
  - {name: file wrong mode, file: %[1]s/f, mode: "0644", owner: nobody, group: "0"}
  - {name: link, file: %[1]s/link, contains: nope}
  - {name: missing, file: %[1]s/none}
  - {name: absent wanted, file: %[1]s/none, exists: false}
  - {name: directory content, file: %[1]s, contains: x}
  - {name: unlabelled, file: %[1]s/f, selinux: etc_t}
  - {name: sysctl, sysctl: kernel.ostype, value: Linux}
  - {name: sysctl words, sysctl: net.ipv4.ip_local_port_range, value: "1 2"}
  - {name: sysctl missing, sysctl: net.ipv4.no_such_key}
  - {name: tcp, port: %[2]d}
  - {name: udp, port: %[3]d, proto: udp}
  - {name: nothing, port: %[4]d}
  - {name: package, package: dpkg}
  - {name: package version, package: dpkg, version: ^0\.}
  - {name: no package, package: no-such-package-labforge}
  - {name: service, service: no-such-unit-labforge}
`, dir, tcpPort, udpPort, freePort)
	s, err := Parse("suite.yaml", []byte(suite))
	if err != nil {
		t.Fatal(err)
	}
	single := Run(context.Background(), localRunner, s, Options{})
	batch := Run(context.Background(), agentRunner(t), s, Options{Batch: true})
	sameResults(t, single, batch)
	if batch.Via != "guest agent" {
		t.Errorf("ran via %q", batch.Via)
	}
}

// An agent that cannot run on the host leaves the checks to scripts, and
// the report says why.
func TestAgentFallsBack(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	r := Local{Shell: "bash", Agent: CompressAgent([]byte("#!/no/such/interpreter\n"))}
	rep := runBatchYAML(t, r, "checks:\n  - {name: a, command: 'echo fine'}\n")
	wantPass(t, rep.Results[0])
	if !strings.HasPrefix(rep.Via, "scripts (guest agent did not start: exit 12") {
		t.Errorf("via %q", rep.Via)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left %v in TMPDIR", left)
	}
}

// Ctrl-C during a batch: the agent kills the check it runs (its whole
// process group) and its directory is removed.
func TestAgentCancelKillsChecks(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pidFile := t.TempDir() + "/pid"
	s, _ := Parse("suite.yaml", []byte(fmt.Sprintf("checks:\n  - {name: hangs, command: 'sleep 60 & echo $! > %s; wait', timeout: 60s}\n", pidFile)))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for range 100 {
			if _, err := os.Stat(pidFile); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	rep := Run(ctx, agentRunner(t), s, Options{Batch: true})
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancel took %v", d)
	}
	wantFail(t, rep.Results[0], "cancelled")
	data, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	for i := 0; pid > 0 && syscall.Kill(pid, 0) == nil; i++ {
		if i == 100 {
			t.Fatalf("the check's child %d outlived the cancelled batch", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; ; i++ {
		left, _ := os.ReadDir(tmp)
		if len(left) == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("left %v in TMPDIR", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
