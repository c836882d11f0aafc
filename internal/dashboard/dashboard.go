// Package dashboard is the instructor's live view of classes in a browser
// (`labforge class serve`): one row per student with the host's state, its
// last verify and the course progress its guest records, updated as it
// changes (server-sent events), with actions on a host (verify again,
// reset, start, stop) and the progress as CSV or JSON for a gradebook.
//
// It serves plain HTML from embedded templates and a little script, no
// asset from outside (a classroom may be offline). Progress is read over
// the SSH path labforge already uses; nothing new listens in a guest.
package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/labs"
)

// Options say what to serve, where, and to whom.
type Options struct {
	Classes  []*class.Class
	Course   *labs.Course
	Listen   string        // host:port; loopback unless the instructor says otherwise
	Token    string        // what state-changing requests must carry; made when empty
	Interval time.Duration // how often each host is polled
	Accel    virt.Accel    // for resets that boot from cold
	// Ready, when set, hears the address served and the URL that logs
	// the instructor in (it carries the token).
	Ready func(addr, loginURL string)
	Log   io.Writer // what actions did
}

// DefaultInterval keeps a change on a guest on the page within 15 s: a
// poll every 5 s, plus the SSH round trip under emulation.
const DefaultInterval = 5 * time.Second

// cookieName holds the token in the instructor's browser; SameSite=Strict,
// so no other site's page can make the browser send it.
const cookieName = "labforge_token"

type server struct {
	opts     Options
	board    *board
	tmpl     *template.Template
	loopback bool
	pokes    map[string]chan struct{} // ask a watcher to poll now
	ctx      context.Context
}

//go:embed templates/*.html
var templates embed.FS

// Serve serves the dashboard until ctx ends.
func Serve(ctx context.Context, o Options) error {
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("class serve: --listen %s: %w", o.Listen, err)
	}
	s := newServer(ctx, o, ln.Addr().(*net.TCPAddr).IP.IsLoopback())
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if o.Ready != nil {
		o.Ready(ln.Addr().String(), fmt.Sprintf("http://%s/?token=%s", ln.Addr(), s.opts.Token))
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newServer fills o's defaults and starts a watcher per student host.
func newServer(ctx context.Context, o Options, loopback bool) *server {
	if o.Token == "" {
		b := make([]byte, 16)
		rand.Read(b)
		o.Token = hex.EncodeToString(b)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &server{opts: o, board: newBoard(), loopback: loopback, pokes: map[string]chan struct{}{}, ctx: ctx}
	s.tmpl = template.Must(template.New("").Funcs(template.FuncMap{"since": since}).ParseFS(templates, "templates/*.html"))
	for _, c := range o.Classes {
		for _, st := range c.Students {
			w := &watcher{b: s.board, c: c, student: st, course: o.Course}
			poke := make(chan struct{}, 1)
			s.pokes[key(c.Name, st)] = poke
			go w.run(ctx, o.Interval, poke)
		}
	}
	return s
}

func (s *server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.read(s.index))
	m.HandleFunc("GET /events", s.read(s.events))
	m.HandleFunc("GET /c/{class}/{student}", s.read(s.studentPage))
	m.HandleFunc("GET /export.csv", s.read(s.exportCSV))
	m.HandleFunc("GET /export.json", s.read(s.exportJSON))
	m.HandleFunc("POST /c/{class}/{student}/{action}", s.act)
	return m
}

// authorized says whether r carries the token, as the cookie the login
// URL set or as an X-Labforge-Token header (for scripts).
func (s *server) authorized(r *http.Request) bool {
	tok := r.Header.Get("X-Labforge-Token")
	if c, err := r.Cookie(cookieName); err == nil && tok == "" {
		tok = c.Value
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// read serves a view: open on loopback, else only with the token. The
// login URL (?token=) sets the cookie and comes back without it.
func (s *server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t := r.URL.Query().Get("token"); t != "" {
			if subtle.ConstantTimeCompare([]byte(t), []byte(s.opts.Token)) != 1 {
				http.Error(w, "wrong token", http.StatusForbidden)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, r.URL.Path, http.StatusSeeOther)
			return
		}
		if s.loopback && !loopbackHost(r.Host) {
			// A page elsewhere whose name was made to point here (DNS
			// rebinding) must not read what loopback serves openly.
			http.Error(w, "this dashboard answers to 127.0.0.1 or localhost only", http.StatusForbidden)
			return
		}
		if !s.loopback && !s.authorized(r) {
			http.Error(w, "this dashboard needs its token: open the URL `labforge class serve` printed", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
		w.Header().Set("X-Frame-Options", "DENY")
		h(w, r)
	}
}

// act runs an action on one host: the token, and a request from this
// dashboard's own pages (an Origin, when the browser sends one, that is
// this server), or nothing changes. The action runs on; the row says so.
func (s *server) act(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		http.Error(w, "actions need the dashboard's token", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	c, st := s.find(r.PathValue("class"), r.PathValue("student"))
	if c == nil {
		http.Error(w, "no such student host", http.StatusNotFound)
		return
	}
	action := r.PathValue("action")
	run, ok := map[string]func(context.Context, *class.Class, string) (string, error){
		"verify": s.verify, "reset": s.reset, "start": s.start, "stop": s.stop,
	}[action]
	if !ok {
		http.Error(w, "unknown action "+action, http.StatusNotFound)
		return
	}
	if !s.board.setAction(c.Name, st, action+" running", "", true) {
		http.Error(w, st+" is busy with another action", http.StatusConflict)
		return
	}
	fmt.Fprintf(s.opts.Log, "%s %s/%s: %s\n", time.Now().Format(time.TimeOnly), c.Name, st, action)
	go func() {
		t0 := time.Now()
		msg, err := run(s.ctx, c, st)
		last := fmt.Sprintf("%s %s in %s", action, msg, time.Since(t0).Round(time.Second))
		if err != nil {
			last = fmt.Sprintf("%s failed: %v", action, err)
		}
		fmt.Fprintf(s.opts.Log, "%s %s/%s: %s\n", time.Now().Format(time.TimeOnly), c.Name, st, last)
		s.board.setAction(c.Name, st, "", last, false)
		select {
		case s.pokes[key(c.Name, st)] <- struct{}{}:
		default:
		}
	}()
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, action, "started")
}

func (s *server) find(cl, st string) (*class.Class, string) {
	for _, c := range s.opts.Classes {
		if c.Name == cl {
			for _, x := range c.Students {
				if x == st {
					return c, st
				}
			}
		}
	}
	return nil, ""
}

func (s *server) verify(ctx context.Context, c *class.Class, st string) (string, error) {
	if c.Verify == "" {
		return "", errors.New("the class's spec has no verify suite")
	}
	suite, err := labhost.SuiteFor(c.Verify, c.Spec, io.Discard)
	if err != nil {
		return "", err
	}
	rep, err := class.VerifyStudent(ctx, c, suite, st)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d passed, %d failed", rep.Passed(), rep.Failed()), nil
}

func (s *server) reset(ctx context.Context, c *class.Class, st string) (string, error) {
	rs, err := class.Reset(ctx, c, []string{st}, 1, s.opts.Accel, 15*time.Minute)
	if err != nil || len(rs) == 0 {
		return "", err
	}
	if rs[0].Instance != nil && rs[0].Instance.Restored != "" {
		return "ok (restored from the warm state)", nil
	}
	return "ok (booted)", nil
}

func (s *server) start(ctx context.Context, c *class.Class, st string) (string, error) {
	_, err := class.Start(ctx, c, []string{st}, 1, 15*time.Minute)
	return "ok", err
}

func (s *server) stop(ctx context.Context, c *class.Class, st string) (string, error) {
	_, err := class.Stop(ctx, c, []string{st}, 1, 2*time.Minute)
	return "ok", err
}

// classView is what a class's section shows.
type classView struct {
	*class.Class
	Rows      []Student
	Exercises []*labs.Exercise
	Up        int
	Hosts     []string
	Golden    string
	// Fingerprint is the one most hosts' last verify had.
	Fingerprint string
	LastVerify  time.Time
}

func (s *server) views() []classView {
	var out []classView
	for _, c := range s.opts.Classes {
		v := classView{Class: c, Rows: s.board.snapshot(c), Exercises: s.opts.Course.Exercises, Golden: c.Image}
		hosts := map[string]bool{}
		count := map[string]int{}
		for _, r := range v.Rows {
			if r.State == "running" {
				v.Up++
			}
			if !hosts[r.Hypervisor] && r.Hypervisor != "" {
				hosts[r.Hypervisor] = true
				v.Hosts = append(v.Hosts, r.Hypervisor)
			}
			if r.Verify != nil {
				count[r.Verify.Fingerprint]++
				if r.Verify.When.After(v.LastVerify) {
					v.LastVerify = r.Verify.When
				}
			}
		}
		for fp, n := range count {
			if fp != "" && n > count[v.Fingerprint] {
				v.Fingerprint = fp
			}
		}
		out = append(out, v)
	}
	return out
}

func (s *server) render(w io.Writer, name string, data any) {
	if err := s.tmpl.ExecuteTemplate(w, name, data); err != nil {
		fmt.Fprintf(s.opts.Log, "dashboard: template %s: %v\n", name, err)
	}
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	s.render(w, "page.html", map[string]any{"Classes": s.views(), "Token": s.authorized(r)})
}

// events streams the classes' sections whenever a row changes, and every
// 15 s anyway (times shown as "12s ago" move on; the stream stays open).
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	var sent uint64
	for force := true; ; {
		v, changed := s.board.wait()
		if force || v != sent {
			force = false
			var b bytes.Buffer
			s.render(&b, "board", s.views())
			data, _ := json.Marshal(b.String())
			fmt.Fprintf(w, "event: board\ndata: %s\n\n", data)
			fl.Flush()
			sent = v
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case <-changed:
			// Changes come in bursts (a poll round): gather them.
			time.Sleep(200 * time.Millisecond)
		case <-keep.C:
			force = true // "12s ago" moves on; the stream stays open
		}
	}
}

func (s *server) studentPage(w http.ResponseWriter, r *http.Request) {
	c, st := s.find(r.PathValue("class"), r.PathValue("student"))
	if c == nil {
		http.NotFound(w, r)
		return
	}
	var row Student
	for _, x := range s.board.snapshot(c) {
		if x.Name == st {
			row = x
		}
	}
	console := "(no console log)"
	if inst, err := instance.Load(st); err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if conn, err := virt.Open(ctx, c.HostOf(st)); err == nil {
			if data, err := instance.ConsoleTail(conn, inst, 8<<10); err == nil {
				console = string(bytes.ToValidUTF8(data, []byte("?")))
			}
			conn.Close()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	s.render(w, "student.html", map[string]any{"Class": c, "Row": row, "Exercises": s.opts.Course.Exercises, "Console": console})
}

// progressRows is the gradebook: one line per student and exercise.
func (s *server) progressRows() []map[string]string {
	var out []map[string]string
	for _, v := range s.views() {
		for _, r := range v.Rows {
			for _, p := range r.Progress {
				out = append(out, map[string]string{
					"class": v.Name, "student": r.Name, "exercise": p.Exercise, "status": p.State(),
					"passed": strconv.Itoa(p.Passed), "checks": strconv.Itoa(p.Checks), "attempts": strconv.Itoa(p.Attempts),
					"hint_stage": strconv.Itoa(p.HintStage), "started": stamp(p.Started), "checked": stamp(p.Checked),
				})
			}
		}
	}
	return out
}

var exportColumns = []string{"class", "student", "exercise", "status", "passed", "checks", "attempts", "hint_stage", "started", "checked"}

func (s *server) exportCSV(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="progress.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(exportColumns)
	for _, row := range s.progressRows() {
		rec := make([]string, len(exportColumns))
		for i, c := range exportColumns {
			rec[i] = row[c]
		}
		cw.Write(rec)
	}
	cw.Flush()
}

func (s *server) exportJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	rows := s.progressRows()
	if rows == nil {
		rows = []map[string]string{}
	}
	enc.Encode(rows)
}

// loopbackHost says whether a request's Host names this machine's
// loopback, as the URL the dashboard prints does.
func loopbackHost(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// since is a time as "12s ago"; "-" for none.
func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	}
	return t.Local().Format("Jan 2 15:04")
}

// stamp is a time for a gradebook: RFC 3339 in UTC; "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
