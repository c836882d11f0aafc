package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboard drives `labforge class serve` in a real headless browser
// (Debian's chromium) over a class of two lab hosts restored from the lab
// image's warm state: both rows show; a `labs check` that passes on one
// host appears without a reload; the page's reset resets the other; a
// request without the token changes nothing; a host destroyed behind
// labforge's back shows as down while the other row keeps updating; the
// CSV export lists each student's exercises. Screenshots go to
// LABFORGE_E2E_ARTEFACTS (default: a temporary directory, logged).
func TestDashboard(t *testing.T) {
	needRoot(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed for the dashboard test (scripts/test installs it): %v", err)
	}
	const name = "e2e-dash"
	s1, s2 := name+"-s01", name+"-s02"
	labforge(t, "class", "destroy", name)
	t.Cleanup(func() { labforge(t, "class", "destroy", name) })
	create := mustLabforge(t, "class", "create", name, "--spec", labSpec, "--students", "2", "--parallel", "2")
	t.Logf("class create (2 lab hosts): %s", create.took.Round(time.Second))

	art := os.Getenv("LABFORGE_E2E_ARTEFACTS")
	if art == "" {
		art = t.TempDir()
	}
	os.MkdirAll(art, 0o755)

	// The server, on a free port, polling every 3 s.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "class", "serve", name, "--listen", "127.0.0.1:0", "--interval", "3s")
	serve.Dir = root
	out, _ := serve.StdoutPipe()
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Wait()
	defer cancel()
	var base, login string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
		if m := regexp.MustCompile(`(http://\S+\?token=\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			login = m[1]
			break
		}
	}
	if login == "" {
		t.Fatal("class serve printed no login URL")
	}
	go io.Copy(io.Discard, out)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1600, 900))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	row := func(s string) string { return `tr[data-student="` + s + `"]` }
	cell := func(s, ex, state string) string {
		return row(s) + ` td[data-exercise="` + ex + `"][data-exercise-state="` + state + `"]`
	}
	// waitFor polls the live page (never reloading it) for sel.
	waitFor := func(sel string, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		wctx, wcancel := context.WithTimeout(bctx, within)
		defer wcancel()
		if err := chromedp.Do(wctx, chromedp.WaitReady(sel)); err != nil {
			shot(t, bctx, filepath.Join(art, "dashboard-timeout.png"))
			t.Fatalf("%s did not appear on the page within %s: %v", sel, within, err)
		}
		return time.Since(t0)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(login)); err != nil {
		t.Fatal(err)
	}
	waitFor(row(s1)+`[data-state="running"]`, 30*time.Second)
	waitFor(row(s2)+`[data-state="running"]`, 30*time.Second)

	const ex = "p1-image-vocabulary"
	t.Run("a check that passes shows without a reload", func(t *testing.T) {
		for _, s := range []string{s1, s2} {
			mustLabforge(t, "lab", "start", ex, "-n", s)
			waitFor(cell(s, ex, "started"), 15*time.Second)
			if r := labforge(t, "lab", "check", ex, "-n", s); r.code == 0 { // nothing done yet
				t.Fatalf("the untouched exercise passed its check: %s", gist(r))
			}
			waitFor(cell(s, ex, "failing"), 15*time.Second)
		}
		shot(t, bctx, filepath.Join(art, "dashboard-failing.png"))
		mustLabforge(t, "lab", "solve", ex, "-n", s1)
		mustLabforge(t, "lab", "check", ex, "-n", s1)
		took := waitFor(cell(s1, ex, "passed"), 15*time.Second)
		t.Logf("FIGURE dashboard: a passing labs check on the page %s after it ended", took.Round(100*time.Millisecond))
		shot(t, bctx, filepath.Join(art, "dashboard-passed.png"))
	})

	t.Run("a request without the token changes nothing", func(t *testing.T) {
		res, err := http.Post(base+"/c/"+name+"/"+s2+"/stop", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("POST without the token: %s", res.Status)
		}
		time.Sleep(2 * time.Second)
		if r := labforge(t, "ssh", "-n", s2, "--", "true"); r.code != 0 {
			t.Fatalf("the host went away after a refused request: %s", gist(r))
		}
	})

	t.Run("reset from the page", func(t *testing.T) {
		mustLabforge(t, "ssh", "-n", s2, "--", "echo homework > ~/work.txt")
		if err := chromedp.Do(bctx,
			chromedp.Click(row(s2)+` button[data-action="reset"]`),
			chromedp.WaitVisible(`#confirm-yes`),
			chromedp.Click(`#confirm-yes`)); err != nil {
			t.Fatal(err)
		}
		waitFor(row(s2)+` .busy`, 15*time.Second)
		took := waitFor(row(s2)+`[data-state="running"] .last`, 3*time.Minute)
		t.Logf("FIGURE dashboard: reset of a lab host from the page %s", took.Round(time.Second))
		if r := labforge(t, "ssh", "-n", s2, "--", "test ! -e ~/work.txt"); r.code != 0 {
			t.Fatalf("a file written before the reset survived it: %s", gist(r))
		}
	})

	t.Run("a dead host shows as down, the others go on", func(t *testing.T) {
		virsh(t, "destroy", "labforge-"+s2)
		took := waitFor(row(s2)+`[data-state="down"]`, 30*time.Second)
		t.Logf("FIGURE dashboard: a destroyed host shown down after %s", took.Round(100*time.Millisecond))
		mustLabforge(t, "lab", "start", "p1-layers", "-n", s1)
		waitFor(cell(s1, "p1-layers", "started"), 15*time.Second)
	})

	t.Run("CSV export", func(t *testing.T) {
		res, err := http.Get(base + "/export.csv")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		recs, err := csv.NewReader(res.Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs[1:] {
			if r[1] == s1 && r[2] == ex {
				found = r[3] == "passed" && r[9] != ""
				t.Logf("CSV: %s", strings.Join(r, ","))
			}
		}
		if !found || recs[0][3] != "status" {
			t.Fatalf("the CSV does not list %s's %s as passed with its time:\n%v", s1, ex, recs)
		}
	})
}

// shot saves a screenshot of the page.
func shot(t *testing.T, ctx context.Context, path string) {
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, buf, 0o644); err == nil {
		t.Logf("screenshot: %s", path)
	}
}
