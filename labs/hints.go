package labs

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/verify"
)

// Hints come in stages. A failing check first shows its pointer (where to
// look); its hint (what to do) only once the check has failed FullHintAfter
// times in the student's `labs check` runs, or after `labs hint ID`. How far
// each check got is kept on the host beside the student's progress.
const FullHintAfter = 3

func (v Env) hintsPath(e *Exercise) string { return path.Join(v.status(), e.ID+".hints") }

// hintStages is, per check name, how many checks it failed (FullHintAfter
// or more: the full hint is shown).
type hintStages map[string]int

func (v Env) readStages(ctx context.Context, h Host, e *Exercise) hintStages {
	st, _ := v.readRecords(ctx, h, e)
	return st
}

// readRecords reads e's hint stages and last check in one round trip.
func (v Env) readRecords(ctx context.Context, h Host, e *Exercise) (hintStages, Progress) {
	st := hintStages{}
	res, err := h.Run(ctx, "cat "+runx.Quote(v.hintsPath(e))+" 2>/dev/null; echo "+recordSep+"; cat "+runx.Quote(path.Join(v.status(), e.ID))+" 2>/dev/null; true")
	if err != nil {
		return st, Progress{}
	}
	hints, last, _ := strings.Cut(res.Stdout, recordSep+"\n")
	parseStages(hints, st)
	var p Progress
	p.parseCheck(last)
	return st, p
}

const recordSep = "--- labforge record"

func parseStages(text string, st hintStages) {
	for _, line := range strings.Split(text, "\n") {
		n, name, ok := strings.Cut(line, "\t")
		if c, err := strconv.Atoi(n); ok && err == nil {
			st[name] = c
		}
	}
}

// stagesText is the record of st, in the checks' order.
func stagesText(e *Exercise, st hintStages) string {
	var b strings.Builder
	for _, c := range e.Checks {
		if n := st[c.Name]; n > 0 {
			fmt.Fprintf(&b, "%d\t%s\n", n, c.Name)
		}
	}
	return b.String()
}

// saveRecords writes the student's records on the host in one round trip:
// path, text, path, text... Losing them only costs the student the
// progress column or a stage of hints.
func (v Env) saveRecords(ctx context.Context, h Host, pathText ...string) {
	cmd := "mkdir -p " + runx.Quote(v.status())
	for i := 0; i+1 < len(pathText); i += 2 {
		cmd += " && printf %s " + runx.Quote(pathText[i+1]) + " > " + runx.Quote(pathText[i])
	}
	_, _ = h.Run(ctx, cmd)
}

// stageHints gives each check the hint of the stage it reached.
func stageHints(s *verify.Suite, e *Exercise, st hintStages) {
	for i := range s.Checks {
		c := &s.Checks[i]
		if st[c.Name] < FullHintAfter-1 && c.Pointer != "" {
			c.Hint = c.Pointer + " (`labs hint " + e.ID + "` says more)"
		}
	}
}

// Hint shows every check's full hint and records that the student asked,
// so that later checks show the full hints too.
func (v Env) Hint(ctx context.Context, h Host, e *Exercise) []verify.Check {
	st := v.readStages(ctx, h, e)
	for _, c := range e.Checks {
		st[c.Name] = max(st[c.Name], FullHintAfter)
	}
	v.saveRecords(ctx, h, v.hintsPath(e), stagesText(e, st))
	return e.Checks
}
