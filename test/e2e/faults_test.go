package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBuildFaults: a build killed with -9 leaves work that the next build
// clears, and a full disk stops a build with the reason and nothing left.
func TestBuildFaults(t *testing.T) {
	needRoot(t)
	mustLabforge(t, "build") // the root fs and image are cached from here on

	t.Run("kill -9 during build", func(t *testing.T) {
		cmd := exec.Command(bin, "build", "--force")
		cmd.Dir = root
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			work, _ := filepath.Glob(filepath.Join(cacheDir(), ".work-container-internals-*", "rootfs", "etc"))
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
		left, _ := filepath.Glob(filepath.Join(cacheDir(), ".work-container-internals-*"))
		if len(left) == 0 {
			t.Fatal("expected the killed build to leave its work tree")
		}
		mustLabforge(t, "build", "--force")
		left, _ = filepath.Glob(filepath.Join(cacheDir(), ".work-container-internals-*"))
		if len(left) != 0 {
			t.Fatalf("work left after the next build: %v", left)
		}
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
		cmd := exec.Command(bin, "build")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LABFORGE_CACHE="+small)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("a build on a full disk succeeded:\n%s", out)
		}
		if !strings.Contains(string(out), "No space left on device") {
			t.Fatalf("the error does not say the disk is full:\n%s", out)
		}
		for _, pat := range []string{".work-*", "images/*.qcow2", "images/*.tmp", "rootfs/.tmp-*"} {
			if m, _ := filepath.Glob(filepath.Join(small, pat)); len(m) > 0 {
				t.Fatalf("a failed build left %v", m)
			}
		}
		t.Logf("disk-full error: %s", strings.TrimSpace(string(out)[strings.LastIndex(strings.TrimSpace(string(out)), "\n")+1:]))
	})
}
