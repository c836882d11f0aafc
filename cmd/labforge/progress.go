package main

import (
	"fmt"
	"io"
	"time"
)

// stepPrinter shows each build or boot step with its time.
type stepPrinter struct {
	w     io.Writer
	quiet bool
	start time.Time
}

func newStepPrinter(w io.Writer, quiet bool) *stepPrinter {
	return &stepPrinter{w: w, quiet: quiet, start: time.Now()}
}

func (p *stepPrinter) Start(step string) {
	if !p.quiet {
		fmt.Fprintf(p.w, "==> %s\n", step)
	}
}

func (p *stepPrinter) Done(step string, d time.Duration, note string, err error) {
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
