// Package progress shows the steps of long work to a person (a line per
// step with its time, a heartbeat every 10 s while one runs, counts where
// work is counted) or, for tools driving labforge, as JSON lines.
package progress

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

// Printer shows each build or boot step with its time, as text or,
// for tools that drive labforge, as one JSON object a line.
type Printer struct {
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

// New is a printer to w: JSON lines when asJSON, else text (only what
// goes wrong when quiet).
func New(w io.Writer, quiet, asJSON bool) *Printer {
	p := &Printer{w: w, quiet: quiet, json: asJSON, start: time.Now(), running: map[string]chan struct{}{}}
	if f, ok := w.(*os.File); p.json || ok && term.IsTerminal(int(f.Fd())) {
		p.beat = heartbeat
	}
	return p
}

// heartbeat bounds the silence during a step: a person watching must
// see that work goes on, and how long it has taken.
const heartbeat = 10 * time.Second

// Event is one line of --progress-json.
type Event struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Event   string    `json:"event"` // start, running, done, failed, note, result
	Seconds float64   `json:"seconds,omitempty"`
	Note    string    `json:"note,omitempty"`
	Error   string    `json:"error,omitempty"`
	// Result is what the command made, on its last event ("result").
	Result map[string]any `json:"result,omitempty"`
}

// Result ends --progress-json output with what the command made.
func (p *Printer) Result(r map[string]any) error {
	p.emit(Event{Step: "result", Event: "result", Result: r})
	return nil
}

// Printf writes one whole line: the heartbeat goroutine writes too.
func (p *Printer) Printf(format string, args ...any) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Note says one thing that is not a step (which accelerator, why a boot
// is cold): a line in text, an Event in JSON.
func (p *Printer) Note(format string, args ...any) {
	switch {
	case p.json:
		p.emit(Event{Step: "note", Event: "note", Note: fmt.Sprintf(format, args...)})
	case !p.quiet:
		p.Printf("==> "+format+"\n", args...)
	}
}

func (p *Printer) emit(e Event) {
	e.Time = time.Now().UTC()
	b, _ := json.Marshal(e)
	p.Printf("%s\n", b)
}

func (p *Printer) Start(step string) {
	switch {
	case p.json:
		p.emit(Event{Step: step, Event: "start"})
	case !p.quiet:
		p.Printf("==> %s\n", step)
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
func (p *Printer) beatUntil(step string, stop chan struct{}, t0 time.Time) {
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
				p.emit(Event{Step: step, Event: "running", Seconds: time.Since(t0).Round(time.Second).Seconds(), Note: note})
			} else {
				if note != "" {
					note = ": " + note
				}
				p.Printf("    ... %s, %s so far%s\n", step, time.Since(t0).Round(time.Second), note)
			}
			p.mu.Unlock()
		}
	}
}

func (p *Printer) Done(step string, d time.Duration, note string, err error) {
	p.mu.Lock()
	if stop, ok := p.running[step]; ok {
		close(stop)
		delete(p.running, step)
	}
	p.mu.Unlock()
	if p.json {
		e := Event{Step: step, Event: "done", Seconds: d.Seconds(), Note: note}
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
	p.Printf("    %s %s in %s%s\n", step, status, d.Round(100*time.Millisecond), note)
}

// setDetail makes the heartbeats of step say what detail returns.
func (p *Printer) setDetail(step string, detail func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.detail == nil {
		p.detail = map[string]func() string{}
	}
	p.detail[step] = detail
}

// Counted runs fn as a printed step whose heartbeats say how many of n
// items are done; fn calls the func it is given as each one finishes.
func (p *Printer) Counted(step, unit string, n int, fn func(done func()) (string, error)) error {
	var k atomic.Int64
	p.setDetail(step, func() string { return fmt.Sprintf("%d of %d %s", k.Load(), n, unit) })
	return p.Timed(step, func() (string, error) { return fn(func() { k.Add(1) }) })
}

// Timed runs fn as a printed step.
func (p *Printer) Timed(step string, fn func() (string, error)) error {
	p.Start(step)
	t0 := time.Now()
	note, err := fn()
	p.Done(step, time.Since(t0), note, err)
	return err
}

// Phased runs fn as a printed step whose heartbeats say which phase of it
// runs; fn calls the func it is given as each phase starts.
func (p *Printer) Phased(step string, fn func(phase func(string)) (string, error)) error {
	var cur atomic.Value
	cur.Store("")
	p.setDetail(step, func() string { return cur.Load().(string) })
	return p.Timed(step, func() (string, error) { return fn(func(s string) { cur.Store(s) }) })
}

// Bytes is n for a person: GiB, MiB or bytes.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
