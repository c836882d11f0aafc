package verify

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jstemmer/go-junit-report/v2/junit"
	"github.com/labforge/labforge/internal/fsx"
)

// WriteTable writes one aligned row per check, a hint line under each
// failure that has one, and a closing "N passed, N failed" line.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tTIME\tDETAIL")
	for _, c := range rep.Results {
		status, detail := "PASS", c.Message
		if !c.Passed {
			status = "FAIL"
		}
		if c.Attempts > 1 {
			detail += fmt.Sprintf(" (%d attempts)", c.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", status, oneLine(c.Name), formatSeconds(c.Duration, 2)+"s", detail)
		if !c.Passed && c.Hint != "" {
			fmt.Fprintf(tw, "\t\t\thint: %s\n", oneLine(c.Hint))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d passed, %d failed\n", rep.Passed(), rep.Failed())
	return err
}

// WriteJSON writes rep as indented JSON; durations are in seconds.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// MarshalJSON gives the report stable snake_case field names.
func (r *Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Suite    string        `json:"suite"`
		Host     string        `json:"host"`
		Started  time.Time     `json:"started"`
		Duration float64       `json:"duration_seconds"`
		Passed   int           `json:"passed"`
		Failed   int           `json:"failed"`
		Results  []CheckResult `json:"results"`
	}{r.Suite, r.Host, r.Started, r.Duration.Seconds(), r.Passed(), r.Failed(), r.Results})
}

// MarshalJSON gives the result stable snake_case field names.
func (c CheckResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name     string    `json:"name"`
		Type     CheckType `json:"type"`
		Passed   bool      `json:"passed"`
		Message  string    `json:"message"`
		Hint     string    `json:"hint,omitempty"`
		Duration float64   `json:"duration_seconds"`
		Attempts int       `json:"attempts"`
		Output   string    `json:"output,omitempty"`
	}{c.Name, c.Type, c.Passed, c.Message, c.Hint, c.Duration.Seconds(), c.Attempts, c.Output})
}

// WriteJUnit writes one JUnit testsuite per report, one testcase per check.
func WriteJUnit(w io.Writer, reports ...*Report) error {
	var suites junit.Testsuites
	var total time.Duration
	for i, rep := range reports {
		ts := junit.Testsuite{Name: suiteName(rep), ID: i, Hostname: rep.Host, Time: formatSeconds(rep.Duration, 3)}
		if !rep.Started.IsZero() {
			ts.SetTimestamp(rep.Started)
		}
		for _, c := range rep.Results {
			tc := junit.Testcase{Name: c.Name, Classname: ts.Name, Time: formatSeconds(c.Duration, 3)}
			if !c.Passed {
				// Name the check in the message too: some CI views show only it.
				msg := c.Name + ": " + c.Message
				if c.Hint != "" {
					msg += " (hint: " + c.Hint + ")"
				}
				tc.Failure = &junit.Result{Message: msg, Type: string(c.Type), Data: failureText(c)}
			}
			ts.AddTestcase(tc)
		}
		suites.AddSuite(ts)
		total += rep.Duration
	}
	suites.Time = formatSeconds(total, 3)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	return suites.WriteXML(w)
}

func suiteName(rep *Report) string {
	if rep.Host == "" {
		return rep.Suite
	}
	return rep.Suite + " on " + rep.Host
}

func failureText(c CheckResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nattempts: %d\n", c.Message, c.Attempts)
	if c.Hint != "" {
		fmt.Fprintf(&b, "hint: %s\n", c.Hint)
	}
	if c.Output != "" {
		fmt.Fprintf(&b, "output:\n%s\n", c.Output)
	}
	return b.String()
}

func formatSeconds(d time.Duration, prec int) string {
	return fmt.Sprintf("%.*f", prec, d.Seconds())
}

// WriteJUnitFile writes the reports' JUnit XML to path whole or not at
// all: a CI job must not pick up half a report.
func WriteJUnitFile(path string, reports ...*Report) error {
	var b bytes.Buffer
	if err := WriteJUnit(&b, reports...); err != nil {
		return fmt.Errorf("junit %s: %w", path, err)
	}
	if err := fsx.WriteAtomic(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}
