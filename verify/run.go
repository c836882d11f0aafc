package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Runner runs one shell command on the host under test.
type Runner interface {
	// Run returns an error only for transport failures, not for a non-zero
	// exit. It must give up when ctx is done.
	Run(ctx context.Context, cmd string) (Result, error)
}

// Result is what one command produced.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Options tune Run.
type Options struct {
	Host string // copied into Report.Host
	// Parallel is how many checks run at once; below 2 they run in suite
	// order. Above 1 the Runner must be safe for concurrent use.
	Parallel int
	// Progress, if set, is called with each result as its check finishes;
	// never concurrently.
	Progress func(CheckResult)
	// Batch runs every check due in a round as one script on the host
	// (batch.go): one round trip instead of one per check. Parallel is
	// then not used: the checks run in suite order.
	Batch bool
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	Name   string
	Type   CheckType
	Passed bool
	// Message is one line: want vs got when the check failed, what was
	// seen when it passed.
	Message  string
	Hint     string
	Duration time.Duration
	Attempts int
	Output   string // tail of the last attempt's output; failures only
}

// Report is the outcome of one suite on one host.
type Report struct {
	Suite    string
	Host     string
	Started  time.Time
	Duration time.Duration
	Results  []CheckResult
	// Via says how a batch ran its checks: "guest agent", or "scripts" and
	// why the agent was not used. Empty when checks ran one exec each.
	Via string
}

// Passed counts the checks that passed.
func (r *Report) Passed() int { return len(r.Results) - r.Failed() }

// Failed counts the checks that failed.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Results {
		if !c.Passed {
			n++
		}
	}
	return n
}

// Err returns nil if every check passed, else an error naming each failure.
func (r *Report) Err() error {
	var failed []string
	for _, c := range r.Results {
		if !c.Passed {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d checks failed: %s", len(failed), len(r.Results), strings.Join(failed, ", "))
}

// Run runs the checks of s through r. Checks left when ctx is cancelled
// are reported as failed rather than dropped, so a report always has every
// check of the suite.
func Run(ctx context.Context, r Runner, s *Suite, opts Options) *Report {
	if opts.Batch {
		return runBatch(ctx, r, s, opts)
	}
	rep := &Report{Suite: s.Name, Host: opts.Host, Started: time.Now(), Results: make([]CheckResult, len(s.Checks))}
	sem := make(chan struct{}, max(opts.Parallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range s.Checks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res := runCheck(ctx, r, s.Defaults, &s.Checks[i])
			rep.Results[i] = res
			if opts.Progress != nil {
				mu.Lock()
				defer mu.Unlock()
				opts.Progress(res)
			}
		})
	}
	wg.Wait()
	rep.Duration = time.Since(rep.Started)
	return rep
}

// Limits on what a result carries, so one chatty check cannot swamp a
// report.
const (
	messageLimit   = 200
	tailLines      = 20
	tailBytes      = 2000
	unlimitedTries = -1
)

// runCheck tries c until it passes, its retries are used up or its timeout
// elapses, whichever comes first.
func runCheck(ctx context.Context, r Runner, d Defaults, c *Check) (res CheckResult) {
	res = CheckResult{Name: c.Name, Type: c.Type, Hint: c.Hint}
	start := time.Now()
	defer func() {
		res.Duration = time.Since(start)
		res.Message = truncate(oneLine(res.Message), messageLimit)
	}()

	p, err := c.probe()
	if err != nil {
		res.Message = err.Error()
		return res
	}
	if err := ctx.Err(); err != nil {
		res.Message = "not run: " + err.Error()
		return res
	}
	timeout := pick(c.Timeout, d.Timeout, Duration(DefaultTimeout))
	interval := pick(c.Interval, d.Interval, Duration(DefaultInterval))
	retries := unlimitedTries
	if c.Retries != nil {
		retries = *c.Retries
	} else if d.Retries != nil {
		retries = *d.Retries
	}

	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var msg string
	var last Result
	for {
		res.Attempts++
		out, err := r.Run(tctx, p.cmd)
		switch {
		case err == nil:
			ok, m := p.eval(out)
			if ok {
				res.Passed, res.Message = true, m
				return res
			}
			// An attempt cut short by the deadline says less than the one
			// before it did.
			if tctx.Err() == nil || msg == "" {
				msg, last = m, out
			}
		case tctx.Err() == nil:
			msg, last = "run: "+err.Error(), Result{}
		}
		if tctx.Err() != nil || (retries != unlimitedTries && res.Attempts > retries) {
			break
		}
		t := time.NewTimer(interval)
		select {
		case <-tctx.Done():
		case <-t.C:
		}
		t.Stop()
		if tctx.Err() != nil {
			break
		}
	}

	switch {
	case ctx.Err() != nil:
		msg = strings.TrimSuffix("cancelled: "+ctx.Err().Error()+"; "+msg, "; ")
	case msg == "" && errors.Is(tctx.Err(), context.DeadlineExceeded):
		msg = fmt.Sprintf("timed out after %s with no result", timeout)
	}
	res.Message, res.Output = msg, outputTail(last)
	return res
}

func pick(vs ...Duration) time.Duration {
	for _, v := range vs[:len(vs)-1] {
		if v > 0 {
			return time.Duration(v)
		}
	}
	return time.Duration(vs[len(vs)-1])
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// outputTail keeps the end of the output, where errors usually are.
func outputTail(r Result) string {
	var parts []string
	if s := tail(r.Stdout); s != "" {
		parts = append(parts, s)
	}
	if s := tail(r.Stderr); s != "" {
		parts = append(parts, "stderr:\n"+s)
	}
	return strings.Join(parts, "\n")
}

func tail(s string) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > tailLines {
		s = strings.Join(lines[len(lines)-tailLines:], "\n")
	}
	if len(s) > tailBytes {
		s = strings.ToValidUTF8(s[len(s)-tailBytes:], "")
	}
	return s
}
