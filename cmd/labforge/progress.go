package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// stepPrinter shows each build or boot step with its time, as text or,
// for tools that drive labforge, as one JSON object a line.
type stepPrinter struct {
	w     io.Writer
	quiet bool
	json  bool
	start time.Time
	// beat is how often a running step says it still runs (0: never):
	// every 10 s on a terminal and in JSON, never into a log file.
	beat    time.Duration
	mu      sync.Mutex // guards running and detail
	wmu     sync.Mutex // one line at a time on w
	running map[string]chan struct{}
	// detail, when set for a step, says in each heartbeat how far it is
	// ("12 of 42 checks").
	detail map[string]func() string
}

// progressJSON is set by the global --progress=json flag.
var progressJSON bool

func newStepPrinter(w io.Writer, quiet bool) *stepPrinter {
	p := &stepPrinter{w: w, quiet: quiet, json: progressJSON, start: time.Now(), running: map[string]chan struct{}{}}
	if f, ok := w.(*os.File); p.json || ok && term.IsTerminal(int(f.Fd())) {
		p.beat = heartbeat
	}
	return p
}

// heartbeat bounds the silence during a step: a person watching must
// see that work goes on, and how long it has taken.
const heartbeat = 10 * time.Second

// progressEvent is one line of --progress=json.
type progressEvent struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Event   string    `json:"event"` // start, running, done, failed, note, result
	Seconds float64   `json:"seconds,omitempty"`
	Note    string    `json:"note,omitempty"`
	Error   string    `json:"error,omitempty"`
	// Result is what the command made, on its last event ("result").
	Result map[string]any `json:"result,omitempty"`
}

// result ends --progress-json output with what the command made.
func (p *stepPrinter) result(r map[string]any) error {
	p.emit(progressEvent{Step: "result", Event: "result", Result: r})
	return nil
}

// printf writes one whole line: the heartbeat goroutine writes too.
func (p *stepPrinter) printf(format string, args ...any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// note says one thing that is not a step (which accelerator, why a boot
// is cold): a line in text, an event in JSON.
func (p *stepPrinter) note(format string, args ...any) {
	switch {
	case p.json:
		p.emit(progressEvent{Step: "note", Event: "note", Note: fmt.Sprintf(format, args...)})
	case !p.quiet:
		p.printf("==> "+format+"\n", args...)
	}
}

func (p *stepPrinter) emit(e progressEvent) {
	e.Time = time.Now().UTC()
	b, _ := json.Marshal(e)
	p.printf("%s\n", b)
}

func (p *stepPrinter) Start(step string) {
	switch {
	case p.json:
		p.emit(progressEvent{Step: step, Event: "start"})
	case !p.quiet:
		p.printf("==> %s\n", step)
	}
	if p.beat > 0 && (p.json || !p.quiet) {
		stop := make(chan struct{})
		p.mu.Lock()
		p.running[step] = stop
		p.mu.Unlock()
		go p.beatUntil(step, stop, time.Now())
	}
}

// beatUntil says every p.beat that step still runs, until stop closes.
func (p *stepPrinter) beatUntil(step string, stop chan struct{}, t0 time.Time) {
	t := time.NewTicker(p.beat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			select {
			case <-stop: // Done came first: nothing after its line
				p.mu.Unlock()
				return
			default:
			}
			note := ""
			if d := p.detail[step]; d != nil {
				note = d()
			}
			if p.json {
				p.emit(progressEvent{Step: step, Event: "running", Seconds: time.Since(t0).Round(time.Second).Seconds(), Note: note})
			} else {
				if note != "" {
					note = ": " + note
				}
				p.printf("    ... %s, %s so far%s\n", step, time.Since(t0).Round(time.Second), note)
			}
			p.mu.Unlock()
		}
	}
}

func (p *stepPrinter) Done(step string, d time.Duration, note string, err error) {
	p.mu.Lock()
	if stop, ok := p.running[step]; ok {
		close(stop)
		delete(p.running, step)
	}
	p.mu.Unlock()
	if p.json {
		e := progressEvent{Step: step, Event: "done", Seconds: d.Seconds(), Note: note}
		if err != nil {
			e.Event, e.Error = "failed", err.Error()
		}
		p.emit(e)
		return
	}
	if p.quiet {
		return
	}
	status := "ok"
	if err != nil {
		status = "FAILED"
	}
	if note != "" {
		note = " (" + note + ")"
	}
	p.printf("    %s %s in %s%s\n", step, status, d.Round(100*time.Millisecond), note)
}

// setDetail makes the heartbeats of step say what detail returns.
func (p *stepPrinter) setDetail(step string, detail func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.detail == nil {
		p.detail = map[string]func() string{}
	}
	p.detail[step] = detail
}

// counted runs fn as a printed step whose heartbeats say how many of n
// items are done; fn calls the func it is given as each one finishes.
func (p *stepPrinter) counted(step, unit string, n int, fn func(done func()) (string, error)) error {
	var k atomic.Int64
	p.setDetail(step, func() string { return fmt.Sprintf("%d of %d %s", k.Load(), n, unit) })
	return p.timed(step, func() (string, error) { return fn(func() { k.Add(1) }) })
}

// timed runs fn as a printed step.
func (p *stepPrinter) timed(step string, fn func() (string, error)) error {
	p.Start(step)
	t0 := time.Now()
	note, err := fn()
	p.Done(step, time.Since(t0), note, err)
	return err
}

// phased runs fn as a printed step whose heartbeats say which phase of it
// runs; fn calls the func it is given as each phase starts.
func (p *stepPrinter) phased(step string, fn func(phase func(string)) (string, error)) error {
	var cur atomic.Value
	cur.Store("")
	p.setDetail(step, func() string { return cur.Load().(string) })
	return p.timed(step, func() (string, error) { return fn(func(s string) { cur.Store(s) }) })
}
