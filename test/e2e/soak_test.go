package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs N up/verify/down cycles of the base host under one name
// and checks, after every cycle, that the host has nothing more than
// before the first: no libvirt domain, storage volume, QEMU process,
// listening loopback port or file under the state dir and the cache's
// build and image dirs. Checking each cycle, not only the last, matters:
// the next up cleans a leftover of its own name, which would hide a leak.
//
// Opt-in (LABFORGE_E2E_SOAK=N); run it alone, as other VMs starting or
// stopping meanwhile would count as leaks.
func TestSoak(t *testing.T) {
	n := soakCycles(t)
	needRoot(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < time.Duration(n)*2*time.Minute {
		t.Fatalf("%d cycles take about %s under TCG; go test's -timeout leaves %s (use -timeout %s)",
			n, time.Duration(n)*2*time.Minute, time.Until(dl).Round(time.Second), time.Duration(n)*4*time.Minute)
	}
	const name = "e2e-soak"
	labforge(t, "down", name) // an earlier, killed run's leftovers; this also makes the name's lock file
	downAfter(t, name)
	mustLabforge(t, "build", baseSpec) // the image, and its build log, exist before the snapshot

	before := takeSnapshot(t)
	t.Logf("before: %s", before.summary())
	var took []time.Duration
	for i := 1; i <= n; i++ {
		t0 := time.Now()
		up := mustLabforge(t, "up", baseSpec, "--name", name, "--no-verify")
		v := mustLabforge(t, "verify", "-n", name)
		down := mustLabforge(t, "down", name)
		took = append(took, time.Since(t0))
		t.Logf("cycle %d/%d: %s (up %s, verify %s, down %s)", i, n, took[i-1].Round(100*time.Millisecond),
			up.took.Round(100*time.Millisecond), v.took.Round(100*time.Millisecond), down.took.Round(100*time.Millisecond))
		if leaks := leaksSince(t, before, 15*time.Second); len(leaks) > 0 {
			t.Fatalf("after cycle %d of %d, left behind:\n  %s", i, n, strings.Join(leaks, "\n  "))
		}
	}
	slices.Sort(took)
	t.Logf("FIGURE soak of %d up/verify/down cycles, nothing leaked: per cycle min %s, median %s, max %s", n,
		took[0].Round(100*time.Millisecond), median(took).Round(100*time.Millisecond), took[len(took)-1].Round(100*time.Millisecond))
}

// median of sorted durations.
func median(d []time.Duration) time.Duration {
	m := len(d) / 2
	if len(d)%2 == 0 {
		return (d[m-1] + d[m]) / 2
	}
	return d[m]
}

// soakCycles reads LABFORGE_E2E_SOAK, skipping the test when it is unset.
func soakCycles(t *testing.T) int {
	t.Helper()
	v := os.Getenv("LABFORGE_E2E_SOAK")
	if v == "" {
		t.Skip("set LABFORGE_E2E_SOAK=N for N up/verify/down cycles, e.g. as root: " +
			"LABFORGE_E2E_SOAK=20 go test -v -timeout 80m -run TestSoak ./test/e2e/ (about 2 min a cycle under TCG)")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("LABFORGE_E2E_SOAK=%q: want a number of cycles, 1 or more", v)
	}
	return n
}

// snapshot is what the host holds, by kind: domain, volume, process,
// port, file; each item a line that names it.
type snapshot map[string]map[string]bool

func takeSnapshot(t *testing.T) snapshot {
	t.Helper()
	return snapshot{
		"domain":         setOf(nonEmpty(strings.Split(domains(t), "\n"))),
		"volume":         volumes(t),
		"qemu process":   qemuProcesses(t),
		"loopback port":  loopbackListeners(t),
		"file or folder": labforgeFiles(t),
	}
}

func (s snapshot) summary() string {
	var parts []string
	for _, kind := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, fmt.Sprintf("%d %s", len(s[kind]), kind))
	}
	return strings.Join(parts, ", ")
}

// leaksSince lists what the host holds now and did not in before. A
// stopping QEMU takes a moment to let its port and files go, so the
// check is repeated for up to grace before it counts.
func leaksSince(t *testing.T, before snapshot, grace time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(grace)
	for {
		var leaks []string
		for kind, items := range takeSnapshot(t) {
			for it := range items {
				if !before[kind][it] {
					leaks = append(leaks, kind+": "+it)
				}
			}
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			slices.Sort(leaks)
			return leaks
		}
		time.Sleep(time.Second)
	}
}

// volumes lists the volumes of every active storage pool, refreshed so a
// file put in a pool's directory behind libvirt's back shows too.
func volumes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, pool := range nonEmpty(strings.Split(virsh(t, "pool-list", "--name"), "\n")) {
		_ = exec.Command("virsh", "-c", "qemu:///system", "pool-refresh", pool).Run()
		for _, l := range nonEmpty(strings.Split(virsh(t, "vol-list", "--pool", pool), "\n")) {
			f := strings.Fields(l)
			if strings.HasPrefix(l, "-") || len(f) >= 2 && f[0] == "Name" && f[1] == "Path" {
				continue // the table's header
			}
			out["pool "+pool+": "+strings.Join(f, " ")] = true
		}
	}
	return out
}

// qemuProcesses lists running QEMU emulators as "PID command line".
func qemuProcesses(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("pgrep", "-a", "-f", "qemu-system").Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return map[string]bool{} // none
	}
	if err != nil {
		t.Fatalf("pgrep: %v", err)
	}
	return setOf(nonEmpty(strings.Split(string(out), "\n")))
}

// loopbackListeners lists the TCP ports listening on 127.0.0.1, where
// labforge's SSH forwards are, from the kernel's own table.
func loopbackListeners(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// "0: 0100007F:0CEA 00000000:0000 0A ...": local address, remote, state (0A = LISTEN).
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		ip, port, err := parseProcAddr(fields[1])
		if err != nil {
			t.Fatalf("/proc/net/tcp: %q: %v", sc.Text(), err)
		}
		if ip.Equal(net.IPv4(127, 0, 0, 1)) {
			out["127.0.0.1:"+strconv.Itoa(port)] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// parseProcAddr reads "0100007F:0CEA": the address is the in-memory
// (network order) word printed as a number of this host's byte order,
// the port a plain hex number.
func parseProcAddr(s string) (net.IP, int, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return nil, 0, fmt.Errorf("not an IPv4 address:port")
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return nil, 0, err
	}
	ip := make(net.IP, 4)
	binary.NativeEndian.PutUint32(ip, binary.BigEndian.Uint32(raw))
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, err
	}
	return ip, int(port), nil
}

// labforgeFiles lists the files and folders an up or down can make or
// leave: everything under the state dir (instances, their locks, seeds,
// overlays, logs), the cache's build logs and images, and labforge's
// temporary files. The accelerator probe's answer (accel.json) is kept
// on purpose until the host reboots, so it does not count.
func labforgeFiles(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	roots := []string{stateDir(), filepath.Join(cacheDir(), "builds"), filepath.Join(cacheDir(), "images")}
	tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), "*labforge*"))
	for _, r := range append(roots, tmp...) {
		err := filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if errors.Is(err, os.ErrNotExist) {
				return nil // not made yet, or gone while walking
			}
			if err != nil {
				return err
			}
			if p != filepath.Join(stateDir(), "accel.json") {
				out[p] = true
			}
			return nil
		})
		if err != nil {
			t.Fatalf("list files under %s: %v", r, err)
		}
	}
	return out
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func setOf(items []string) map[string]bool {
	out := map[string]bool{}
	for _, it := range items {
		out[it] = true
	}
	return out
}

// The port snapshot itself, without a VM: a port held on 127.0.0.1 shows,
// and is gone once closed, as a QEMU forward would be.
func TestLoopbackListeners(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if !loopbackListeners(t)[port] {
		l.Close()
		t.Fatalf("%s listens but is not in the snapshot", port)
	}
	l.Close()
	if loopbackListeners(t)[port] {
		t.Fatalf("%s is closed but still in the snapshot", port)
	}
}
