package class

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/verify"
)

// fingerprintCmd summarises what makes hosts identical: the packages with
// their versions, the kernel, and the SELinux policy modules.
const fingerprintCmd = `{ dpkg-query -W -f '${Package} ${Version}\n' 2>/dev/null || rpm -qa | sort; uname -r; semodule -l 2>/dev/null; } | sha256sum | cut -d' ' -f1`

type hostOut struct {
	rep         *verify.Report
	fingerprint string
	image       string
	err         error
}

// verifyHost runs suite on student s's host (and the fingerprint command
// when asked), and keeps the report as the host's last verify.
func verifyHost(ctx context.Context, c *Class, suite *verify.Suite, s string, fingerprint bool) (out hostOut) {
	defer func() {
		rep := out.rep
		if rep == nil {
			rep = unreachable(suite, s, out.err)
		}
		saveLastVerify(c, s, rep, out.fingerprint)
	}()
	inst, err := instance.Load(s)
	if err != nil {
		return hostOut{err: err}
	}
	cfg, err := inst.SSHConfig()
	if err != nil {
		return hostOut{err: err}
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	client, err := sshx.Dial(dctx, cfg)
	cancel()
	if err != nil {
		return hostOut{err: err, image: inst.Image}
	}
	defer client.Close()
	runner := instance.RootRunner{Client: client}
	rep := verify.Run(ctx, runner, suite, verify.Options{Batch: true})
	rep.Host = s
	if !fingerprint {
		return hostOut{rep: rep, image: inst.Image}
	}
	fp, err := runner.Run(ctx, fingerprintCmd)
	if err != nil {
		return hostOut{rep: rep, err: err, image: inst.Image}
	}
	return hostOut{rep: rep, fingerprint: strings.TrimSpace(fp.Stdout), image: inst.Image}
}

// unreachable is the report of a host the suite could not run on.
func unreachable(suite *verify.Suite, s string, err error) *verify.Report {
	return &verify.Report{Suite: suite.Name, Host: s, Started: time.Now(), Results: []verify.CheckResult{
		{Name: "reachable", Type: verify.TypeCommand, Message: fmt.Sprint(err), Attempts: 1}}}
}

// VerifyStudent runs suite on one student's host (the dashboard's "verify
// again"); its report becomes the host's last verify.
func VerifyStudent(ctx context.Context, c *Class, suite *verify.Suite, s string) (*verify.Report, error) {
	if err := c.check([]string{s}); err != nil {
		return nil, err
	}
	out := verifyHost(ctx, c, suite, s, true)
	if out.rep == nil {
		return unreachable(suite, s, out.err), nil
	}
	return out.rep, nil
}

// LastVerify is what the last verify of a host said.
type LastVerify struct {
	When time.Time `json:"when"`
	// Fingerprint sums the host's packages, kernel and policy modules
	// (class verify and the dashboard take it): equal on identical hosts.
	Fingerprint string   `json:"fingerprint,omitempty"`
	Passed      int      `json:"passed"`
	Failed      int      `json:"failed"`
	Failures    []string `json:"failures,omitempty"`
	Table       string   `json:"table"` // the report as verify prints it
}

func lastVerifyPath(c *Class, s string) string {
	return filepath.Join(Dir(c.Name), "verify", s+".json")
}

// saveLastVerify keeps rep as s's last verify; losing it only costs the
// dashboard a column.
func saveLastVerify(c *Class, s string, rep *verify.Report, fingerprint string) {
	var table strings.Builder
	verify.WriteTable(&table, rep)
	lv := LastVerify{When: time.Now().UTC(), Fingerprint: fingerprint, Passed: rep.Passed(), Failed: rep.Failed(), Table: table.String()}
	for _, r := range rep.Results {
		if !r.Passed {
			lv.Failures = append(lv.Failures, r.Name)
		}
	}
	data, _ := json.Marshal(lv)
	if err := os.MkdirAll(filepath.Dir(lastVerifyPath(c, s)), 0o750); err == nil {
		_ = fsx.WriteAtomic(lastVerifyPath(c, s), data, 0o640)
	}
}

// ReadLastVerify is s's last verify; false when it never had one.
func ReadLastVerify(c *Class, s string) (LastVerify, bool) {
	var lv LastVerify
	data, err := os.ReadFile(lastVerifyPath(c, s))
	if err != nil || json.Unmarshal(data, &lv) != nil {
		return LastVerify{}, false
	}
	return lv, true
}

// Verify runs suite on every host of the class (at most parallel at once)
// and adds a fingerprint suite proving that every host runs the same image
// with the same packages. One host's failure does not stop the others.
func Verify(ctx context.Context, c *Class, suite *verify.Suite, parallel int) []*verify.Report {
	outs := forEach(ctx, c.Students, parallel, func(ctx context.Context, s string) hostOut {
		return verifyHost(ctx, c, suite, s, true)
	})
	var reports []*verify.Report
	fpRep := &verify.Report{Suite: "fingerprint", Host: c.Name, Started: time.Now()}
	want := ""
	for i, o := range outs {
		s := c.Students[i]
		if o.rep != nil {
			reports = append(reports, o.rep)
		} else {
			reports = append(reports, unreachable(suite, s, o.err))
		}
		r := verify.CheckResult{Name: s + " matches the golden image", Type: verify.TypeCommand, Attempts: 1}
		switch {
		case o.fingerprint == "":
			r.Message = fmt.Sprintf("no fingerprint: %v", o.err)
		case o.image != c.Image:
			r.Message = fmt.Sprintf("runs %s, not the class image %s", o.image, c.Image)
		case want == "":
			want = o.fingerprint
			r.Passed, r.Message = true, "packages, kernel and policy "+o.fingerprint[:16]
		case o.fingerprint != want:
			r.Message = fmt.Sprintf("packages, kernel or policy differ: %s, first host %s", o.fingerprint[:16], want[:16])
		default:
			r.Passed, r.Message = true, "same as the first host "+o.fingerprint[:16]
		}
		fpRep.Results = append(fpRep.Results, r)
	}
	fpRep.Duration = time.Since(fpRep.Started)
	return append(reports, fpRep)
}

// VerifyOptions say which class class verify checks, with what suite,
// and where the reports go.
type VerifyOptions struct {
	Name      string
	SuitePath string // "": the class's own
	JUnitPath string // "": no JUnit file
	Parallel  int    // hosts verified at once
	Out       io.Writer
	Stderr    io.Writer
}

// RunVerify verifies class o.Name, writes each report's table to o.Out
// (and all of them as JUnit when asked), and says on o.Stderr how many
// suites failed, if any. It returns that number.
func RunVerify(ctx context.Context, o VerifyOptions) (int, error) {
	c, err := Load(o.Name)
	if err != nil {
		return 0, err
	}
	if o.SuitePath == "" {
		o.SuitePath = c.Verify
	}
	suite, err := labhost.SuiteFor(o.SuitePath, c.Spec, o.Stderr)
	if err != nil {
		return 0, err
	}
	reports := Verify(ctx, c, suite, o.Parallel)
	failed, err := writeReports(o.Out, reports)
	if err != nil {
		return failed, err
	}
	if o.JUnitPath != "" {
		if err := verify.WriteJUnitFile(o.JUnitPath, reports...); err != nil {
			return failed, err
		}
	}
	if failed > 0 {
		fmt.Fprintf(o.Stderr, "labforge: class %s: %d of %d suites failed\n", c.Name, failed, len(reports))
	}
	return failed, nil
}

// writeReports writes each report's table under its suite and host, and
// counts the suites that failed.
func writeReports(w io.Writer, reports []*verify.Report) (int, error) {
	failed := 0
	for _, rep := range reports {
		fmt.Fprintf(w, "\n%s on %s\n", rep.Suite, rep.Host)
		if err := verify.WriteTable(w, rep); err != nil {
			return failed, err
		}
		if rep.Failed() > 0 {
			failed++
		}
	}
	return failed, nil
}
