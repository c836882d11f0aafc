package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The common typed checks are answered in-process, not handed back to the
// shell (what they print is compared with the probes in verify's tests).
func TestNativesAnswer(t *testing.T) {
	f := t.TempDir() + "/f"
	os.WriteFile(f, []byte("x"), 0o640)
	if out, ok := fileFacts(&Native{Arg: f, Contents: true, SELinux: true}); !ok || !strings.Contains(out, "mode=640 ") || !strings.HasSuffix(out, ContentMarker+"\nx") {
		t.Errorf("file: %q %v", out, ok)
	}
	if out, ok := sysctlValue("kernel.ostype"); !ok || out != "Linux\n" {
		t.Errorf("sysctl: %q %v", out, ok)
	}
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if out, ok := listening("tcp", port); !ok || out != "LISTEN 0 0 127.0.0.1:"+port+" 0.0.0.0:*\n" {
		t.Errorf("port: %q %v", out, ok)
	}
	if _, err := os.Stat("/var/lib/dpkg/status"); err == nil {
		if out, ok := readDpkgStatus().query("dpkg"); !ok || !strings.HasPrefix(out, "dpkg\nii  ") {
			t.Errorf("package: %q %v", out, ok)
		}
	}
}

func TestPlainWords(t *testing.T) {
	for line, plain := range map[string]bool{
		"uname -r": true, "stat -c %a /etc/shadow": true, "dpkg-query -W openssh-server": true,
		"echo hi": false, "FOO=1 env": false, "ls > x": false, "cat $HOME": false, "ls *": false,
		"a\nb": false, "no-such-program-labforge": false, "test -e /etc/passwd": true, "kill 1": false,
	} {
		if got := plainWords(line) != nil; got != plain {
			t.Errorf("%q: plain %v, want %v", line, got, plain)
		}
	}
}

// A round in, frames and its end out; the session ends with stdin.
func TestServe(t *testing.T) {
	req, _ := json.Marshal(Round{Checks: []Item{
		{Idx: 0, Cmd: "echo one", Timeout: 5000},
		{Idx: 1, Cmd: "exit 3", Timeout: 5000, Concurrent: true},
		{Idx: 2, Cmd: "sleep 5", Timeout: 100},
	}})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- Serve(inR, outW); outW.Close() }()
	go inW.Write(append(req, '\n'))
	sc := bufio.NewScanner(outR)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), `"end":true`) {
			break
		}
	}
	inW.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if len(lines) != 5 || lines[0] != Hello {
		t.Fatalf("got %q", lines)
	}
	got := map[int]Frame{}
	for _, l := range lines[1:4] {
		var f Frame
		json.Unmarshal([]byte(l), &f)
		got[f.Idx] = f
	}
	if string(got[0].Stdout) != "one\n" || got[1].Exit != 3 || !got[2].TimedOut || got[2].Exit != TimeoutExit {
		t.Errorf("frames %+v", got)
	}
}

// A command in the round may change what typed checks read (here: a
// package installed): the checks after it read again, as their probes would.
func TestStateReadAgainAfterCommand(t *testing.T) {
	f := t.TempDir() + "/status"
	os.WriteFile(f, []byte("Package: a\nStatus: install ok installed\nVersion: 1\n"), 0o644)
	old := dpkgStatusFile
	dpkgStatusFile = f
	defer func() { dpkgStatusFile = old }()
	items := []Item{
		{Idx: 0, Native: &Native{Kind: "package", Arg: "bb"}, Cmd: "false", Timeout: 5000},
		{Idx: 1, Cmd: "printf '\\nPackage: bb\\nStatus: install ok installed\\nVersion: 2\\n' >> " + f, Timeout: 5000},
		{Idx: 2, Native: &Native{Kind: "package", Arg: "bb"}, Cmd: "false", Timeout: 5000},
	}
	st := &state{ctx: context.Background(), items: items}
	var outs []string
	for i, it := range items {
		outs = append(outs, string(answer(context.Background(), it, i, st).Stdout))
	}
	if !strings.Contains(outs[0], "no packages found") || !strings.Contains(outs[2], "ii  2") {
		t.Fatalf("before and after the install: %q", outs)
	}
}
