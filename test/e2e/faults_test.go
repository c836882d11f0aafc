package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBuildFaults: a build killed with -9 leaves work that the next build
// clears, and a full disk stops a build with the reason and nothing left.
func TestBuildFaults(t *testing.T) {
	needRoot(t)
	mustLabforge(t, "build", baseSpec) // the root fs and image are cached from here on

	// A tool driving labforge reads stdout as JSON lines, every one.
	pj := mustLabforge(t, "build", baseSpec, "--progress-json")
	lines := strings.Split(strings.TrimSpace(pj.stdout), "\n")
	for i, l := range lines {
		var e struct{ Event, Step string }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Event == "" {
			t.Fatalf("--progress-json stdout line %d is not an event: %q (%v)", i+1, l, err)
		}
	}
	if !strings.Contains(lines[len(lines)-1], `"event":"result"`) || !strings.Contains(lines[len(lines)-1], `"image":`) {
		t.Fatalf("--progress-json does not end with the result: %q", lines[len(lines)-1])
	}

	records, _ := filepath.Glob(filepath.Join(cacheDir(), "images", "debian-base-*.record.json"))
	if len(records) == 0 {
		t.Fatal("no build record of the default image")
	}
	sort.Slice(records, func(i, j int) bool { return modTime(records[i]).After(modTime(records[j])) })
	before := filepath.Join(t.TempDir(), "before.record.json")
	copyFile(t, records[0], before)
	copyFile(t, strings.TrimSuffix(records[0], ".record.json")+".tree", strings.TrimSuffix(before, ".record.json")+".tree")

	// A spec may not write outside the tree it builds: the build host's
	// /etc/cron.hourly stays as it was.
	t.Run("a spec's dest with .. is refused, nothing written on the host", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "prog"), 0o755)
		os.WriteFile(filepath.Join(dir, "prog", "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
		spec := filepath.Join(dir, "evil.yaml")
		os.WriteFile(spec, []byte("name: evil\nbase: debian-12\nartifacts:\n  - name: prog\n    go: prog\n    dest: /../../../../etc/cron.hourly\n"), 0o644)
		before, _ := os.ReadDir("/etc/cron.hourly")
		r := labforge(t, "build", spec)
		if r.code == 0 || !strings.Contains(r.stderr, `evil.yaml:6: artifacts[0].dest: "/../../../../etc/cron.hourly": a path in the guest may not contain ".."`) {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if after, _ := os.ReadDir("/etc/cron.hourly"); len(after) != len(before) {
			t.Fatalf("/etc/cron.hourly changed: %d entries, was %d", len(after), len(before))
		}
		if m, _ := filepath.Glob(filepath.Join(cacheDir(), ".work-evil.*")); len(m) > 0 {
			t.Fatalf("a refused spec left %v", m)
		}
	})

	t.Run("kill -9 during build", func(t *testing.T) {
		cmd := exec.Command(bin, "build", baseSpec, "--force")
		cmd.Dir = root
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			work, _ := filepath.Glob(filepath.Join(cacheDir(), ".work-debian-base.*", "rootfs", "etc"))
			if len(work) > 0 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("the forced build never started its work tree")
			}
			time.Sleep(100 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		left, _ := filepath.Glob(filepath.Join(cacheDir(), ".work-debian-base.*"))
		if len(left) == 0 {
			t.Fatal("expected the killed build to leave its work tree")
		}
		mustLabforge(t, "build", baseSpec, "--force")
		left, _ = filepath.Glob(filepath.Join(cacheDir(), ".work-debian-base.*"))
		if len(left) != 0 {
			t.Fatalf("work left after the next build: %v", left)
		}
	})

	t.Run("two builds of one spec have one file tree", func(t *testing.T) {
		// The forced rebuild above made the image again from the same spec.
		d := mustLabforge(t, "image", "diff", before, records[0])
		if !strings.Contains(d.stdout, "0 differences") {
			t.Fatalf("two builds of the same spec differ:\n%s", d.stdout)
		}
		var a, b struct{ TreeDigest string }
		readJSON(t, before, &a)
		readJSON(t, records[0], &b)
		if a.TreeDigest == "" || a.TreeDigest != b.TreeDigest {
			t.Fatalf("file-tree digests %q and %q", a.TreeDigest, b.TreeDigest)
		}
		t.Logf("FIGURE file-tree digest of two builds: %s = %s", a.TreeDigest[:16], b.TreeDigest[:16])
	})

	t.Run("disk full", func(t *testing.T) {
		// A cache on a file system too small for the build: the cached root
		// fs fits, its working copy does not.
		small := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=700m", "tmpfs", small).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a small tmpfs here: %v %s", err, out)
		}
		defer exec.Command("umount", "-l", small).Run()
		rootfs, _ := filepath.Glob(filepath.Join(cacheDir(), "rootfs", "[0-9a-f]*[0-9a-f]"))
		if len(rootfs) == 0 {
			t.Fatal("no cached root fs")
		}
		dst := filepath.Join(small, "rootfs", filepath.Base(rootfs[0]))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if out, err := exec.Command("cp", "-a", rootfs[0], dst).CombinedOutput(); err != nil {
			t.Fatalf("seed small cache: %v %s", err, out)
		}
		cmd := exec.Command(bin, "build", baseSpec)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LABFORGE_CACHE="+small)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("a build on a full disk succeeded:\n%s", out)
		}
		if !strings.Contains(string(out), "No space left on device") {
			t.Fatalf("the error does not say the disk is full:\n%s", out)
		}
		for _, pat := range []string{".work-*", "images/*.qcow2", "images/*.tmp", "images/.*.tmp-*", "rootfs/.tmp-*"} {
			if m, _ := filepath.Glob(filepath.Join(small, pat)); len(m) > 0 {
				t.Fatalf("a failed build left %v", m)
			}
		}
		t.Logf("disk-full error: %s", strings.TrimSpace(string(out)[strings.LastIndex(strings.TrimSpace(string(out)), "\n")+1:]))
	})
}

func modTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
