package class

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/verify"
)

// fingerprintCmd summarises what makes hosts identical: the packages with
// their versions, the kernel, and the SELinux policy modules.
const fingerprintCmd = `{ dpkg-query -W -f '${Package} ${Version}\n' 2>/dev/null || rpm -qa | sort; uname -r; semodule -l 2>/dev/null; } | sha256sum | cut -d' ' -f1`

// Verify runs suite on every host of the class (at most parallel at once)
// and adds a fingerprint suite proving that every host runs the same image
// with the same packages. One host's failure does not stop the others.
func Verify(ctx context.Context, c *Class, suite *verify.Suite, parallel int) []*verify.Report {
	type hostOut struct {
		rep         *verify.Report
		fingerprint string
		image       string
		err         error
	}
	outs := forEach(ctx, c.Students, parallel, func(ctx context.Context, s string) hostOut {
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
		fp, err := runner.Run(ctx, fingerprintCmd)
		if err != nil {
			return hostOut{rep: rep, err: err, image: inst.Image}
		}
		return hostOut{rep: rep, fingerprint: strings.TrimSpace(fp.Stdout), image: inst.Image}
	})
	var reports []*verify.Report
	fpRep := &verify.Report{Suite: "fingerprint", Host: c.Name, Started: time.Now()}
	want := ""
	for i, o := range outs {
		s := c.Students[i]
		if o.rep != nil {
			reports = append(reports, o.rep)
		} else {
			reports = append(reports, &verify.Report{Suite: suite.Name, Host: s, Results: []verify.CheckResult{
				{Name: "reachable", Type: verify.TypeCommand, Message: fmt.Sprint(o.err), Attempts: 1}}})
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
