package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/labs"
)

// A class whose hosts do not exist: the page still shows its rows (as
// missing), and the rules on tokens hold. Hosts are tested end to end.
func testServer(t *testing.T, loopback bool) (*httptest.Server, *server) {
	t.Helper()
	t.Setenv("LABFORGE_STATE", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &class.Class{Name: "demo", Image: "/cache/golden.qcow2", Students: []string{"demo-s01", "demo-s02"}}
	course := &labs.Course{Exercises: []*labs.Exercise{{ID: "p1-a", Title: "A"}, {ID: "p1-b", Title: "B"}}}
	s := newServer(ctx, Options{Classes: []*class.Class{c}, Course: course, Token: "secret", Interval: 50 * time.Millisecond}, loopback)
	ts := httptest.NewServer(s.routes())
	t.Cleanup(ts.Close)
	return ts, s
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestPageAndExports(t *testing.T) {
	ts, _ := testServer(t, true)
	code, body := get(t, ts.Client(), ts.URL+"/")
	if code != 200 || !strings.Contains(body, `data-student="demo-s01"`) || !strings.Contains(body, `data-student="demo-s02"`) || !strings.Contains(body, "Read-only") {
		t.Fatalf("page %d:\n%s", code, body)
	}
	if strings.Contains(body, "http://") && strings.Contains(body, "<script src") {
		t.Fatal("the page loads a script from elsewhere")
	}
	code, body = get(t, ts.Client(), ts.URL+"/export.csv")
	if code != 200 || !strings.HasPrefix(body, "class,student,exercise,status,passed,checks,attempts,hint_stage,started,checked\n") {
		t.Fatalf("csv %d: %q", code, body)
	}
	code, body = get(t, ts.Client(), ts.URL+"/export.json")
	var rows []map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &rows) != nil {
		t.Fatalf("json %d: %q", code, body)
	}
}

// The live stream sends the board at once and again when a row changes.
func TestEvents(t *testing.T) {
	ts, s := testServer(t, true)
	res, err := ts.Client().Get(ts.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	events := 0
	deadline := time.After(5 * time.Second)
	got := make(chan string)
	go func() {
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				got <- sc.Text()
			}
		}
	}()
	for events < 2 {
		select {
		case d := <-got:
			events++
			if events == 1 {
				s.board.setAction("demo", "demo-s01", "verify running", "", true)
			} else if !strings.Contains(d, "verify running") {
				t.Fatalf("second event lacks the change: %s", d)
			}
		case <-deadline:
			t.Fatalf("%d events in 5 s", events)
		}
	}
}

// Actions need the token (cookie from the login URL, or the header) and a
// request from the dashboard itself; refused ones change nothing.
func TestActionsNeedToken(t *testing.T) {
	ts, s := testServer(t, true)
	post := func(h map[string]string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/c/demo/demo-s01/stop", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := post(nil); c != http.StatusForbidden {
		t.Errorf("no token: %d", c)
	}
	if c := post(map[string]string{"X-Labforge-Token": "wrong"}); c != http.StatusForbidden {
		t.Errorf("wrong token: %d", c)
	}
	if c := post(map[string]string{"X-Labforge-Token": "secret", "Origin": "http://evil.example"}); c != http.StatusForbidden {
		t.Errorf("cross-site: %d", c)
	}
	for _, r := range s.board.snapshot(s.opts.Classes[0]) {
		if r.Busy != "" || r.Last != "" {
			t.Errorf("a refused request changed %s: %q %q", r.Name, r.Busy, r.Last)
		}
	}
	// The login URL sets a SameSite=Strict cookie and drops the token from the URL.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get(ts.URL + "/?token=secret")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ck := res.Cookies()
	if res.StatusCode != http.StatusSeeOther || len(ck) != 1 || ck[0].Value != "secret" || ck[0].SameSite != http.SameSiteStrictMode || !ck[0].HttpOnly {
		t.Fatalf("login: %d %+v", res.StatusCode, ck)
	}
	if code, _ := get(t, ts.Client(), ts.URL+"/?token=wrong"); code != http.StatusForbidden {
		t.Errorf("wrong login token: %d", code)
	}
	s.board.setAction("demo", "demo-s01", "reset running", "", true)
	if c := post(map[string]string{"Cookie": "labforge_token=secret", "Origin": ts.URL}); c != http.StatusConflict {
		t.Errorf("while another action runs: %d", c)
	}
	s.board.setAction("demo", "demo-s01", "", "reset ok", false)
	if c := post(map[string]string{"Cookie": "labforge_token=secret", "Origin": ts.URL}); c != http.StatusAccepted {
		t.Errorf("with the cookie: %d", c)
	}
}

// On loopback, a request for another host name (DNS rebinding) is refused.
func TestRebindingRefused(t *testing.T) {
	ts, _ := testServer(t, true)
	req, _ := http.NewRequest("GET", ts.URL+"/export.json", nil)
	req.Host = "attacker.example:7840"
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("Host attacker.example: %s", res.Status)
	}
}

// Off loopback every view needs the token too.
func TestViewsOffLoopback(t *testing.T) {
	ts, _ := testServer(t, false)
	if code, _ := get(t, ts.Client(), ts.URL+"/export.csv"); code != http.StatusForbidden {
		t.Errorf("export without token off loopback: %d", code)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/export.csv", nil)
	req.Header.Set("X-Labforge-Token", "secret")
	res, err := ts.Client().Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Errorf("export with token: %v %v", res.StatusCode, err)
	}
}
