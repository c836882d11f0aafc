package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// stepPrinter shows each build or boot step with its time, as text or,
// for tools that drive labforge, as one JSON object a line.
type stepPrinter struct {
	w     io.Writer
	quiet bool
	json  bool
	start time.Time
}

// progressJSON is set by the global --progress=json flag.
var progressJSON bool

func newStepPrinter(w io.Writer, quiet bool) *stepPrinter {
	return &stepPrinter{w: w, quiet: quiet, json: progressJSON, start: time.Now()}
}

// progressEvent is one line of --progress=json.
type progressEvent struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Event   string    `json:"event"` // start, done, failed
	Seconds float64   `json:"seconds,omitempty"`
	Note    string    `json:"note,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func (p *stepPrinter) emit(e progressEvent) {
	e.Time = time.Now().UTC()
	b, _ := json.Marshal(e)
	fmt.Fprintln(p.w, string(b))
}

func (p *stepPrinter) Start(step string) {
	switch {
	case p.json:
		p.emit(progressEvent{Step: step, Event: "start"})
	case !p.quiet:
		fmt.Fprintf(p.w, "==> %s\n", step)
	}
}

func (p *stepPrinter) Done(step string, d time.Duration, note string, err error) {
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
	fmt.Fprintf(p.w, "    %s %s in %s%s\n", step, status, d.Round(100*time.Millisecond), note)
}

// timed runs fn as a printed step.
func (p *stepPrinter) timed(step string, fn func() (string, error)) error {
	p.Start(step)
	t0 := time.Now()
	note, err := fn()
	p.Done(step, time.Since(t0), note, err)
	return err
}
