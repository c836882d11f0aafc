package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClass makes a class of 3 linked clones on this hypervisor, verifies
// them (one JUnit suite per host plus the fingerprint suite), resets one
// (a file written before is gone after), and destroys the class.
func TestClass(t *testing.T) {
	needRoot(t)
	const name = "e2e-cls"
	labforge(t, "class", "destroy", name)
	t.Cleanup(func() { labforge(t, "class", "destroy", name) })

	create := mustLabforge(t, "class", "create", name, "--spec", baseSpec, "--students", "3", "--parallel", "3")
	t.Logf("class create: %s\n%s", create.took.Round(time.Second), create.stdout)
	if m := regexp.MustCompile(`clones take (.+) in all on top of the (.+) golden image`).FindStringSubmatch(create.stdout); m != nil {
		t.Logf("FIGURE class of 3: created in %s; clones %s in all over a %s image", create.took.Round(time.Second), m[1], m[2])
	}
	roster, err := os.ReadFile(filepath.Join(stateDir(), "classes", name, "roster.csv"))
	if err != nil || strings.Count(string(roster), "\n") != 4 {
		t.Fatalf("roster.csv: %v\n%s", err, roster)
	}

	junitPath := filepath.Join(t.TempDir(), "class.xml")
	v := mustLabforge(t, "class", "verify", name, "--junit", junitPath)
	t.Logf("class verify: %s", v.took.Round(time.Second))
	suites := readJUnit(t, junitPath).Suites
	if len(suites) != 4 {
		t.Fatalf("want 3 host suites and the fingerprint suite, got %d", len(suites))
	}
	for _, s := range suites {
		if s.Failures != 0 || s.Tests == 0 {
			t.Fatalf("suite %s: %d tests, %d failures", s.Name, s.Tests, s.Failures)
		}
	}

	st := mustLabforge(t, "class", "status", name)
	if m := regexp.MustCompile(`(?m)^total\s+(\S+ \S+)`).FindStringSubmatch(st.stdout); m == nil || strings.Count(st.stdout, "warm state") != 3 {
		t.Fatalf("class status: want 3 hosts from the warm state and their memory:\n%s", st.stdout)
	} else {
		t.Logf("FIGURE class of 3 restored base hosts: host memory %s (QEMU resident)", m[1])
	}

	t.Run("hosts restored from one warm state are each their own", func(t *testing.T) {
		restoredIdentities(t, name+"-s01", name+"-s02", name+"-s03")
	})

	resetStudents(t, name, name+"-s02")

	mustLabforge(t, "class", "destroy", name)
	if d := domains(t); strings.Contains(d, "labforge-"+name) {
		t.Fatalf("domains left after destroy:\n%s", d)
	}
	left, _ := filepath.Glob(filepath.Join(stateDir(), "instances", name+"-*"))
	if _, err := os.Stat(filepath.Join(stateDir(), "classes", name)); !os.IsNotExist(err) || len(left) > 0 {
		t.Fatalf("files left after destroy: %v %v", err, left)
	}
}

func stateDir() string {
	if d := os.Getenv("LABFORGE_STATE"); d != "" {
		return d
	}
	return "/var/lib/labforge"
}

// resetStudents writes a file on each student's host, resets them, and
// fails if the file survived.
func resetStudents(t *testing.T, class string, students ...string) {
	t.Helper()
	for _, s := range students {
		mustLabforge(t, "ssh", "-n", s, "--", "echo homework > ~/work.txt")
	}
	reset := mustLabforge(t, append([]string{"class", "reset", class}, students...)...)
	t.Logf("FIGURE class reset of %d: %s\n%s", len(students), reset.took.Round(time.Second), reset.stdout)
	for _, s := range students {
		if r := labforge(t, "ssh", "-n", s, "--", "test ! -e ~/work.txt"); r.code != 0 {
			t.Fatalf("%s: a file written before the reset survived it", s)
		}
	}
}

// restoredIdentities checks hosts restored from one warm state: each has
// its own SSH host key (the only one it offers), client key (the state's
// is refused), hostname and machine-id; its kernel log says its RNG was
// reseeded, its random bytes differ from the others', and its clock is
// the host's.
func restoredIdentities(t *testing.T, hosts ...string) {
	t.Helper()
	seen := map[string]map[string]string{}
	for _, h := range hosts {
		var inst struct {
			HostKey  string `json:"hostKey"`
			Restored string `json:"restored"`
		}
		data, err := os.ReadFile(filepath.Join(stateDir(), "instances", h, "instance.json"))
		if err != nil || json.Unmarshal(data, &inst) != nil || inst.Restored == "" {
			t.Fatalf("%s: not restored from a warm state: %v\n%s", h, err, data)
		}
		key, _ := os.ReadFile(filepath.Join(stateDir(), "instances", h, "id_ed25519"))
		before := time.Now()
		r := mustLabforge(t, "ssh", "-n", h, "--", `hostname; cat /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; date +%s.%N; sudo ls /etc/ssh | grep -c '^ssh_host_'; wc -l < ~/.ssh/authorized_keys; sudo dmesg | grep -c 'crng reseeded'`)
		after := time.Now()
		f := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(f) != 7 {
			t.Fatalf("%s: %q", h, r.stdout)
		}
		if f[0] != h {
			t.Errorf("%s: hostname %q", h, f[0])
		}
		if f[4] != "2" || f[5] != "1" {
			t.Errorf("%s: %s host key files (want the one pair), %s authorized keys (want 1)", h, f[4], f[5])
		}
		if f[6] == "0" {
			t.Errorf("%s: no RNG reseed in the kernel log", h)
		}
		guest, _ := strconv.ParseFloat(f[3], 64)
		mid := float64(before.UnixNano()+after.UnixNano()) / 2e9
		if skew := guest - mid; skew > 2+after.Sub(before).Seconds()/2 || skew < -2-after.Sub(before).Seconds()/2 {
			t.Errorf("%s: clock %.1f s off the host's", h, skew)
		}
		t.Logf("FIGURE %s: clock %.2f s off the host's (±%.2f s of ssh)", h, guest-mid, after.Sub(before).Seconds()/2)
		seen[h] = map[string]string{"host key": inst.HostKey, "client key": string(key), "machine-id": f[1], "random bytes": f[2]}

		// The warm state's own login is gone from the restored host.
		kp := filepath.Join(stateDir(), "instances", h, "id_ed25519")
		state, err := os.ReadFile(filepath.Join(cacheDir(), "warm", inst.Restored, "id_ed25519"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(kp, state, 0o600)
		r2 := labforge(t, "ssh", "-n", h, "--", "true")
		os.WriteFile(kp, key, 0o600)
		if r2.code == 0 || !strings.Contains(r2.stderr, "unable to authenticate") {
			t.Errorf("%s: the warm state's key still logs in (exit %d: %s)", h, r2.code, r2.stderr)
		}
	}
	for i, a := range hosts {
		for _, b := range hosts[i+1:] {
			for what, v := range seen[a] {
				if v == "" || v == seen[b][what] {
					t.Errorf("%s and %s share their %s", a, b, what)
				}
			}
		}
	}
}
