package verify

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/runx"
)

// Streamer is a Runner that can hand over a command's output as it comes,
// so that a batch reports each check as it finishes.
type Streamer interface {
	Stream(ctx context.Context, cmd string, stdout io.Writer) (exitCode int, stderr string, err error)
}

// A batch runs every check due in one round as one shell script on the
// host: one session, one shell, no round trip per check. Each check still
// runs in its own sh, in suite order (a check marked concurrent starts in
// the background and is waited for at the round's end), under its own
// timeout; the script frames each check's exit code, time and output
// (base64) on its stdout, keeping them meanwhile in a private directory
// that it removes. A check's own stdout and stderr are pipes, as when it
// runs alone: a confined program (semodule runs as semanage_t) may write
// to a pipe it inherits, not to a file in /tmp.
//
// Checks that fail and may retry go into a later round, after their
// interval: only the checks still failing are run again.

// batchItem is one check's state across rounds.
type batchItem struct {
	idx      int
	check    *Check
	p        probe
	timeout  time.Duration
	interval time.Duration
	retries  int
	deadline time.Time     // first attempt + timeout
	given    time.Duration // this round's timeout(1) for it
	nextAt   time.Time
	first    time.Time // when its first attempt started (this side's clock); zero before
	res      CheckResult
	msg      string
	last     Result
	done     bool
}

// batchFrame is what the script or the agent says of one attempt. The
// agent times each check and says when its timeout ended it; a script's
// checks are timed here, as their frames arrive.
type batchFrame struct {
	idx      int
	exit     int
	out      Result
	took     time.Duration
	timedOut bool
}

func runBatch(ctx context.Context, r Runner, s *Suite, opts Options) *Report {
	rep := &Report{Suite: s.Name, Host: opts.Host, Started: time.Now(), Results: make([]CheckResult, len(s.Checks))}
	finish := func(it *batchItem) {
		it.done = true
		it.res.Message = truncate(oneLine(it.res.Message), messageLimit)
		rep.Results[it.idx] = it.res
		if opts.Progress != nil {
			opts.Progress(it.res)
		}
	}
	ag := newAgentConn(r)
	defer ag.close()
	var items []*batchItem
	for i := range s.Checks {
		c := &s.Checks[i]
		it := &batchItem{idx: i, check: c, res: CheckResult{Name: c.Name, Type: c.Type, Hint: c.Hint}}
		p, err := c.probe()
		if err != nil {
			it.res.Message = err.Error()
			finish(it)
			continue
		}
		it.p = p
		it.timeout = pick(c.Timeout, s.Defaults.Timeout, Duration(DefaultTimeout))
		it.interval = pick(c.Interval, s.Defaults.Interval, Duration(DefaultInterval))
		it.retries = unlimitedTries
		if c.Retries != nil {
			it.retries = *c.Retries
		} else if s.Defaults.Retries != nil {
			it.retries = *s.Defaults.Retries
		}
		items = append(items, it)
	}
	for {
		var due []*batchItem
		var wake time.Time
		now := time.Now()
		for _, it := range items {
			switch {
			case it.done:
			case !it.nextAt.After(now):
				due = append(due, it)
			case wake.IsZero() || it.nextAt.Before(wake):
				wake = it.nextAt
			}
		}
		if len(due) == 0 && wake.IsZero() {
			break
		}
		if len(due) == 0 {
			t := time.NewTimer(time.Until(wake))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			for _, it := range items {
				if !it.done {
					it.res.Message = strings.TrimSuffix("cancelled: "+ctx.Err().Error()+"; "+it.msg, "; ")
					if it.res.Attempts == 0 {
						it.res.Message = "not run: " + ctx.Err().Error()
					}
					it.res.Output = outputTail(it.last)
					finish(it)
				}
			}
			break
		}
		if len(due) > 0 {
			runRound(ctx, r, ag, due, finish)
		}
	}
	rep.Duration = time.Since(rep.Started)
	rep.Via = ag.via()
	return rep
}

// runRound runs the due checks, through the agent or as one script, and
// settles each: passed, out of tries, or due again after its interval.
func runRound(ctx context.Context, r Runner, ag *agentConn, due []*batchItem, finish func(*batchItem)) {
	start := time.Now()
	byIdx := map[int]*batchItem{}
	for _, it := range due {
		// A check's time counts from its first attempt's start, as when it
		// runs alone, not from the round's: in a round, the checks before
		// it may take minutes (a host still booting). Until it has started
		// it has its whole timeout.
		left := it.timeout
		if !it.first.IsZero() {
			left = max(time.Until(it.deadline), time.Second)
		}
		it.given = time.Duration(int(left.Seconds()+0.999)) * time.Second
		byIdx[it.idx] = it
	}
	last := start // when the previous frame came: a sequential check started then
	settle := func(f batchFrame) {
		it := byIdx[f.idx]
		if it == nil || it.done || ctx.Err() != nil {
			return // killed by Ctrl-C: the batch reports it cancelled
		}
		delete(byIdx, f.idx)
		took := f.took
		switch {
		case took > 0:
		case it.check.Concurrent:
			took = time.Since(start)
		default:
			took = time.Since(last)
			last = time.Now()
		}
		if it.first.IsZero() {
			it.first = time.Now().Add(-took)
			it.deadline = it.first.Add(it.timeout)
		}
		it.res.Attempts++
		it.res.Duration += took
		if f.timedOut || (f.took == 0 && f.exit == 124 && took >= it.given-time.Second) {
			// Its timeout ended it: as when a single check's deadline passes.
			if it.msg == "" {
				it.msg = fmt.Sprintf("timed out after %s with no result", it.timeout)
			}
		} else if ok, m := it.p.eval(f.out); ok {
			it.res.Passed, it.res.Message = true, m
			finish(it)
			return
		} else {
			it.msg, it.last = m, f.out
		}
		retry(it, finish)
	}
	var err error
	if !ag.off {
		err = ag.round(ctx, due, settle)
	}
	if ag.off {
		err = scriptRound(ctx, r, due, settle)
	}
	if ctx.Err() != nil {
		// The round was under way: its checks count it as tried, and the
		// batch reports them cancelled.
		for _, it := range byIdx {
			if !it.done {
				it.res.Attempts++
				it.res.Duration += time.Since(start)
			}
		}
		return
	}
	// Checks never reported: the connection failed.
	for _, it := range byIdx {
		if it.done {
			continue
		}
		if it.first.IsZero() {
			it.first, it.deadline = start, start.Add(it.timeout)
		}
		it.res.Attempts++
		it.res.Duration += time.Since(start)
		if err != nil && ctx.Err() == nil {
			it.msg, it.last = "run: "+err.Error(), Result{}
		} else if it.msg == "" {
			it.msg = "no result from the batch"
		}
		retry(it, finish)
	}
}

// scriptRound runs the due checks as one shell script, its frames behind
// a per-round random marker.
func scriptRound(ctx context.Context, r Runner, due []*batchItem, settle func(batchFrame)) error {
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	marker := "@@labforge-verify-" + hex.EncodeToString(nonce)
	var script strings.Builder
	script.WriteString(batchPrelude(marker))
	var background []int
	for _, it := range due {
		call := fmt.Sprintf("c %d %d %s", it.idx, int(it.given.Seconds()), runx.Quote(it.p.cmd))
		if it.check.Concurrent {
			// Its frame waits in a file until the round's end.
			fmt.Fprintf(&script, "%s > \"$d/%d.f\" &\n", call, it.idx)
			background = append(background, it.idx)
			continue
		}
		if it.check.Barrier && len(background) > 0 {
			script.WriteString("wait\n")
		}
		script.WriteString(call + "\n")
	}
	if len(background) > 0 {
		script.WriteString("wait\n")
		for _, i := range background {
			fmt.Fprintf(&script, "cat \"$d/%d.f\"\n", i)
		}
	}
	return streamBatch(ctx, r, script.String(), marker, settle)
}

// retry schedules the next attempt of a failed check, or gives it up.
func retry(it *batchItem, finish func(*batchItem)) {
	next := time.Now().Add(it.interval)
	if (it.retries != unlimitedTries && it.res.Attempts > it.retries) || !next.Before(it.deadline) {
		it.res.Message, it.res.Output = it.msg, outputTail(it.last)
		finish(it)
		return
	}
	it.nextAt = next
	it.res.Duration += it.interval // at least that long before it runs again
}

// batchPrelude defines the script's one function: c IDX TIMEOUT CMD. Under
// emulation every process costs tens of milliseconds, so a check costs
// five beside its own: timeout, sh, two base64 and one cat. Its time is
// taken on this side, when its frame arrives.
func batchPrelude(marker string) string {
	return `d=$(mktemp -d "${TMPDIR:-/tmp}/.labforge-verify.XXXXXX") || exit 125
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP INT TERM
c() {
	{ { timeout -k 5 "$2" sh -c "$3" < /dev/null 2>&3 3>&-; echo $? > "$d/$1.r"; } | { base64 -w0; echo; } > "$d/$1.o"; } 3>&1 | { base64 -w0; echo; } > "$d/$1.e"
	read -r r < "$d/$1.r"
	printf '\n` + marker + ` %s %s\n' "$1" "$r"
	cat "$d/$1.o" "$d/$1.e"
}
`
}

// streamBatch runs the script and hands each framed result to settle as it
// arrives (all at the end when the runner cannot stream).
func streamBatch(ctx context.Context, r Runner, script, marker string, settle func(batchFrame)) error {
	if st, ok := r.(Streamer); ok {
		pr, pw := io.Pipe()
		parsed := make(chan error, 1)
		go func() {
			parsed <- parseBatch(pr, marker, settle)
			io.Copy(io.Discard, pr)
		}()
		code, stderr, err := st.Stream(ctx, script, pw)
		pw.Close()
		perr := <-parsed
		return batchErr(code, stderr, err, perr)
	}
	res, err := r.Run(ctx, script)
	perr := parseBatch(strings.NewReader(res.Stdout), marker, settle)
	return batchErr(res.ExitCode, res.Stderr, err, perr)
}

func batchErr(code int, stderr string, err, perr error) error {
	switch {
	case err != nil:
		return err
	case perr != nil:
		return perr
	case code != 0:
		return fmt.Errorf("batch exit %d: %s", code, firstLine(stderr))
	}
	return nil
}

// parseBatch reads the script's frames: a marker line with the check's
// index, exit code and time in ns, then its stdout and stderr in base64.
func parseBatch(r io.Reader, marker string, settle func(batchFrame)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		f, ok := strings.CutPrefix(sc.Text(), marker+" ")
		if !ok {
			continue
		}
		var fr batchFrame
		parts := strings.Fields(f)
		if len(parts) != 2 {
			return fmt.Errorf("batch: bad frame %q", f)
		}
		var err error
		if fr.idx, err = strconv.Atoi(parts[0]); err != nil {
			return fmt.Errorf("batch: bad frame %q", f)
		}
		if fr.exit, err = strconv.Atoi(parts[1]); err != nil {
			return fmt.Errorf("batch: bad frame %q", f)
		}
		var outs [2]string
		for k := range outs {
			if !sc.Scan() {
				return fmt.Errorf("batch: frame of check %d cut short", fr.idx)
			}
			b, err := base64.StdEncoding.DecodeString(sc.Text())
			if err != nil {
				return fmt.Errorf("batch: check %d: %w", fr.idx, err)
			}
			outs[k] = string(b)
		}
		fr.out = Result{Stdout: outs[0], Stderr: outs[1], ExitCode: fr.exit}
		settle(fr)
	}
	return sc.Err()
}
