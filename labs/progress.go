package labs

import (
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/runx"
)

// The student's progress is kept on the host, in StatusDir, one file per
// record: ID.started (when `labs start` ran, Unix seconds), ID (the last
// `labs check`: "PASSED/CHECKS RFC3339 RUNS"), ID.hints (per check, how
// often it failed). The guest's `labs` reads the first field of ID; the
// class dashboard reads them all with ProgressCommand.

func (v Env) startedPath(e *Exercise) string { return path.Join(v.status(), e.ID+".started") }

// Progress is one exercise's progress on a host.
type Progress struct {
	Exercise       string
	Started        time.Time // zero: never started
	Checked        time.Time // the last check; zero: never checked
	Passed, Checks int       // of the last check
	Attempts       int       // checks run so far
	// HintStage is the furthest any check got: 0 none failed, 1 and 2 the
	// pointer shown, FullHintAfter and up the full hint.
	HintStage int
	Activity  time.Time // the newest of its records
}

// State is the exercise's state in a word: not started, started,
// failing or passed.
func (p Progress) State() string {
	switch {
	case !p.Checked.IsZero() && p.Checks > 0 && p.Passed == p.Checks:
		return "passed"
	case !p.Checked.IsZero():
		return "failing"
	case !p.Started.IsZero():
		return "started"
	}
	return "not started"
}

func (p *Progress) parseCheck(line string) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return
	}
	a, b, _ := strings.Cut(f[0], "/")
	p.Passed, _ = strconv.Atoi(a)
	p.Checks, _ = strconv.Atoi(b)
	p.Checked, _ = time.Parse(time.RFC3339, f[1])
	p.Attempts = 1 // records from before the count
	if len(f) >= 3 {
		if n, err := strconv.Atoi(f[2]); err == nil {
			p.Attempts = n
		}
	}
}

// ProgressCommand prints every record of the course on the host, each
// behind a line naming it and its time; ParseProgress reads its output.
func (v Env) ProgressCommand() string {
	return "cd " + runx.Quote(v.status()) + " 2>/dev/null || exit 0; for f in *; do [ -f \"$f\" ] || continue; " +
		"printf '%s %s %s\\n' '" + recordSep + "' \"$f\" \"$(stat -c %Y \"$f\")\"; cat \"$f\"; done"
}

// ParseProgress is the progress of every exercise of c, in the course's
// order, from ProgressCommand's output.
func ParseProgress(c *Course, out string) []Progress {
	byID := map[string]*Progress{}
	var list []Progress
	for _, e := range c.Exercises {
		list = append(list, Progress{Exercise: e.ID})
	}
	for i := range list {
		byID[list[i].Exercise] = &list[i]
	}
	for _, chunk := range strings.Split(out, recordSep+" ")[1:] {
		head, body, _ := strings.Cut(chunk, "\n")
		f := strings.Fields(head)
		if len(f) != 2 {
			continue
		}
		id, kind, _ := strings.Cut(f[0], ".")
		p := byID[id]
		if p == nil {
			continue
		}
		if secs, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			if t := time.Unix(secs, 0); t.After(p.Activity) {
				p.Activity = t
			}
		}
		switch kind {
		case "":
			p.parseCheck(body)
		case "started":
			if secs, err := strconv.ParseInt(strings.TrimSpace(body), 10, 64); err == nil {
				p.Started = time.Unix(secs, 0)
			}
		case "hints":
			st := hintStages{}
			parseStages(body, st)
			for _, n := range st {
				p.HintStage = max(p.HintStage, n)
			}
		}
	}
	// A check without a start record (a host from before them) started.
	for i := range list {
		if list[i].Started.IsZero() && !list[i].Checked.IsZero() {
			list[i].Started = list[i].Checked
		}
	}
	return slices.Clip(list)
}
