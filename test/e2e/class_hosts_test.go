package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/fsx"
)

// hv2Pool is labforge's pool directory as hv2's libvirtd and QEMU see it.
const hv2Pool = "/var/lib/libvirt/images/labforge"

// TestClassTwoHosts splits a class of 4 between this machine's libvirtd
// and a second hypervisor (testdata/hv2.sh: its own network namespace,
// libvirtd and sshd, reached over qemu+ssh), verifies it, and destroys
// it: nothing is left on either hypervisor. A student on hv2 is reset
// (TestClass resets one here). About 6 minutes under TCG;
// LABFORGE_E2E_HOSTS=0 skips it.
func TestClassTwoHosts(t *testing.T) {
	needRoot(t)
	if os.Getenv("LABFORGE_E2E_HOSTS") == "0" {
		t.Skip("LABFORGE_E2E_HOSTS=0")
	}
	const name = "e2e-hosts"
	// hv2's libvirt-qemu must traverse DIR, which t.TempDir makes 0700.
	dir, err := os.MkdirTemp("", "labforge-hv2-")
	if err != nil {
		t.Fatal(err)
	}
	hv2 := func(args ...string) result {
		return run(t, 5*time.Minute, nil, "bash", append([]string{"test/e2e/testdata/hv2.sh"}, append(args, dir)...)...)
	}
	t.Cleanup(func() {
		if r := hv2("down"); r.code != 0 {
			t.Errorf("hv2.sh down: %s", r.stderr)
		}
	})
	if up := hv2("up"); up.code != 0 {
		t.Fatalf("hv2.sh up: exit %d\n%s", up.code, up.stderr)
	}
	uri := strings.TrimSpace(hv2("uri").stdout)
	remote := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("virsh", append([]string{"-c", uri}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("virsh on hv2 %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	labforge(t, "class", "destroy", name)
	t.Cleanup(func() { labforge(t, "class", "destroy", name) }) // before hv2 goes down

	create := mustLabforge(t, "class", "create", name, "--spec", baseSpec, "--students", "4", "--parallel", "4",
		"--hosts", "qemu:///system,"+uri)
	t.Logf("class create: %s\n%s", create.took.Round(time.Second), create.stdout)
	t.Logf("FIGURE class of 4 over two hypervisors: created in %s", create.took.Round(time.Second))
	if m := regexp.MustCompile(`uploaded to \S+ in (\S+) \(([^)]+)\)`).FindStringSubmatch(create.stdout); m != nil {
		t.Logf("FIGURE golden image upload to hv2 (qemu+ssh, libvirt storage upload): %s for %s", m[1], m[2])
	} else {
		t.Fatalf("no upload line in:\n%s", create.stdout)
	}
	for _, m := range regexp.MustCompile(`(?m)^(\S+-s\d\d)\s+(\S+)\s+up\s+.*\s(\S+ [KMG]?i?B)$`).FindAllStringSubmatch(create.stdout, -1) {
		t.Logf("FIGURE clone disk of %s on %s: %s", m[1], m[2], m[3])
	}

	var cls struct {
		Image    string            `json:"image"`
		Students []string          `json:"students"`
		Hosts    map[string]string `json:"hosts"`
		Golden   string            `json:"golden"`
	}
	data, err := os.ReadFile(filepath.Join(stateDir(), "classes", name, "class.json"))
	if err != nil || json.Unmarshal(data, &cls) != nil {
		t.Fatalf("class.json: %v\n%s", err, data)
	}
	var onHV2 []string
	perHost := map[string]int{}
	for s, h := range cls.Hosts {
		perHost[h]++
		if h == uri {
			onHV2 = append(onHV2, s)
		}
	}
	if len(cls.Hosts) != 4 || perHost["qemu:///system"] != 2 || perHost[uri] != 2 {
		t.Fatalf("placement %v: want 2 students on each hypervisor", cls.Hosts)
	}
	if csv, err := os.ReadFile(filepath.Join(stateDir(), "classes", name, "roster.csv")); err != nil || strings.Count(string(csv), "\n") != 5 {
		t.Fatalf("roster.csv: want a header and 4 lines: %v\n%s", err, csv)
	}
	var roster []struct{ Student, Host, SSH string }
	data, _ = os.ReadFile(filepath.Join(stateDir(), "classes", name, "roster.json"))
	if err := json.Unmarshal(data, &roster); err != nil || len(roster) != 4 {
		t.Fatalf("roster.json: %v\n%s", err, data)
	}
	for _, e := range roster {
		if e.Host != cls.Hosts[e.Student] || (e.Host == uri) != strings.Contains(e.SSH, " -J root@10.231.0.2:22 ") {
			t.Errorf("roster line %+v: host or ssh -J wrong", e)
		}
	}

	list := mustLabforge(t, "list").stdout
	for _, s := range onHV2 {
		if !regexp.MustCompile(`(?m)^` + s + `\s+running\s+\S+\s+root@10\.231\.0\.2:22\s`).MatchString(list) {
			t.Errorf("labforge list does not show %s running on hv2:\n%s", s, list)
		}
	}

	t.Run("golden image uploaded into hv2's pool, clones on it", func(t *testing.T) {
		sum, err := fsx.SHA256(cls.Image)
		if err != nil {
			t.Fatal(err)
		}
		if cls.Golden != "golden-"+sum+".qcow2" {
			t.Fatalf("golden volume %q is not named by the image's sha256 %s", cls.Golden, sum)
		}
		if !strings.Contains(remote("vol-list", "labforge"), hv2Pool+"/"+cls.Golden) {
			t.Fatalf("no %s in hv2's pool labforge", cls.Golden)
		}
		// hv2's QEMU could read this machine's files: prove the bytes are
		// in hv2's own tree (its private /var/lib/libvirt), not here.
		private := filepath.Join(dir, "root", hv2Pool)
		if got, err := fsx.SHA256(filepath.Join(private, cls.Golden)); err != nil || got != sum {
			t.Fatalf("hv2's copy of the golden image: sha256 %s, %v; want %s", got, err, sum)
		}
		if _, err := os.Stat(filepath.Join(hv2Pool, cls.Golden)); !os.IsNotExist(err) {
			t.Fatalf("the golden volume is on this machine too: %v", err)
		}
		hv2Doms := remote("list", "--name")
		for _, s := range onHV2 {
			dom := "labforge-" + s
			if !strings.Contains(hv2Doms, dom) || strings.Contains(domains(t), dom) {
				t.Fatalf("%s: not running on hv2 alone (hv2: %q)", dom, hv2Doms)
			}
			x := remote("dumpxml", dom)
			// The overlay, its backing golden volume and the seed.
			srcs := regexp.MustCompile(`<source file='([^']+)'`).FindAllStringSubmatch(x, -1)
			if len(srcs) != 3 || !strings.Contains(x, "<source file='"+hv2Pool+"/"+cls.Golden+"'") {
				t.Fatalf("%s: want the overlay, the golden volume and the seed, got %v", dom, srcs)
			}
			for _, src := range srcs {
				if filepath.Dir(src[1]) != hv2Pool {
					t.Fatalf("%s: disk %s outside hv2's pool", dom, src[1])
				}
				if _, err := os.Stat(filepath.Join(private, filepath.Base(src[1]))); err != nil {
					t.Fatalf("%s: %s not in hv2's tree: %v", dom, src[1], err)
				}
			}
			info, err := exec.Command("qemu-img", "info", "-U", filepath.Join(private, dom+".qcow2")).CombinedOutput()
			if err != nil || !strings.Contains(string(info), "backing file: "+hv2Pool+"/"+cls.Golden) {
				t.Fatalf("%s's overlay is not backed by the golden volume: %v\n%s", dom, err, info)
			}
			if !regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:\d+-:22`).MatchString(x) {
				t.Fatalf("%s: forward not on loopback", dom)
			}
		}
	})

	junitPath := filepath.Join(t.TempDir(), "class.xml")
	v := mustLabforge(t, "class", "verify", name, "--junit", junitPath)
	t.Logf("FIGURE class verify of 4 hosts over two hypervisors: %s", v.took.Round(time.Second))
	suites := readJUnit(t, junitPath).Suites
	if len(suites) != 5 || suites[4].Name == "" || !strings.Contains(suites[4].Name, "fingerprint") {
		t.Fatalf("want 4 host suites and the fingerprint suite, got %d", len(suites))
	}
	for _, s := range suites {
		if s.Failures != 0 || s.Tests == 0 {
			t.Fatalf("suite %s: %d tests, %d failures", s.Name, s.Tests, s.Failures)
		}
	}
	st := mustLabforge(t, "class", "status", name)
	if strings.Count(st.stdout, "running") != 4 || strings.Count(st.stdout, "ok (127.0.0.1:") != 4 {
		t.Fatalf("class status:\n%s", st.stdout)
	}
	if r := mustLabforge(t, "ssh", "-n", onHV2[0], "--", "hostname"); strings.TrimSpace(r.stdout) != onHV2[0] {
		t.Fatalf("labforge ssh through hv2: %q", r.stdout)
	}

	// A reset on hv2: a new overlay on its golden volume, booted there.
	resetStudents(t, name, onHV2[0])

	ports := map[string]bool{}
	for _, s := range cls.Students {
		var inst struct{ SSHPort int }
		data, _ := os.ReadFile(filepath.Join(stateDir(), "instances", s, "instance.json"))
		json.Unmarshal(data, &inst)
		ports[":"+strconv.Itoa(inst.SSHPort)+" "] = true
	}
	d := mustLabforge(t, "class", "destroy", name)
	t.Logf("class destroy: %s", d.took.Round(100*time.Millisecond))

	if doms := domains(t) + remote("list", "--all", "--name"); strings.Contains(doms, "labforge-"+name) {
		t.Fatalf("domains left after destroy:\n%s", doms)
	}
	if pools := remote("pool-list", "--all", "--name"); strings.Contains(pools, "labforge") {
		t.Fatalf("hv2's pool left after destroy: %s\n%s", pools, remote("vol-list", "labforge"))
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "root", hv2Pool)); len(left) > 0 {
		t.Fatalf("files left in hv2's pool directory: %v", left)
	}
	left, _ := filepath.Glob(filepath.Join(stateDir(), "instances", name+"-*"))
	if _, err := os.Stat(filepath.Join(stateDir(), "classes", name)); !os.IsNotExist(err) || len(left) > 0 {
		t.Fatalf("files left after destroy: %v %v", err, left)
	}
	// QEMU takes a moment to let its process and port go.
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs, _ := exec.Command("pgrep", "-a", "-f", "guest=labforge-"+name).Output()
		hostPorts, _ := exec.Command("ss", "-Hltn").Output()
		nsPorts, _ := exec.Command("ip", "netns", "exec", "labforge-hv2", "ss", "-Hltn").Output()
		var busy []string
		for p := range ports {
			if strings.Contains(string(hostPorts)+" ", "127.0.0.1"+p) || strings.Contains(string(nsPorts)+" ", "127.0.0.1"+p) {
				busy = append(busy, p)
			}
		}
		if len(procs) == 0 && len(busy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after destroy: processes %q, ports %v", procs, busy)
		}
		time.Sleep(time.Second)
	}
}
