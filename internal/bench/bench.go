// Package bench measures labforge on this machine and prints tables: the
// layer cache, verify, up from cold against up restored, and labforge
// against its peers (Packer, Vagrant, an ssh loop) on the same work. Each
// figure is a ratio to its peer measured in the same run.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

// stepCounter counts the steps a build really ran (not cached).
type stepCounter struct{ ran []string }

func (c *stepCounter) Start(string) {}
func (c *stepCounter) Done(step string, d time.Duration, note string, err error) {
	if err == nil && !strings.HasPrefix(note, "cached") {
		c.ran = append(c.ran, step)
	}
}

// Layers builds the spec three ways in one run: a forced full build, a
// rebuild with no change, a rebuild after changing only the last step.
func Layers(ctx context.Context, out io.Writer, specPath string) error {
	spec, err := images.Load(specPath)
	if err != nil {
		return err
	}
	if len(spec.Provision) == 0 {
		return fmt.Errorf("%s has no provisioning steps to cache", specPath)
	}
	log, err := os.CreateTemp("", "labforge-bench-*.log")
	if err != nil {
		return err
	}
	defer log.Close()
	type row struct {
		name string
		took time.Duration
		ran  []string
	}
	var rows []row
	run := func(name string, force bool) error {
		c := &stepCounter{}
		t0 := time.Now()
		_, err := builder.Build(ctx, spec, builder.Options{CacheDir: paths.Cache(), Log: log, Progress: c, Force: force})
		if err != nil {
			return fmt.Errorf("%s: %w (log %s)", name, err, log.Name())
		}
		rows = append(rows, row{name, time.Since(t0), c.ran})
		return nil
	}
	if err := run("cold (forced) build", true); err != nil {
		return err
	}
	if err := run("rebuild, no change", false); err != nil {
		return err
	}
	// Change the last step in memory only: the spec file stays as it is.
	last := &spec.Provision[len(spec.Provision)-1]
	last.Run += fmt.Sprintf("\n# labforge bench %d\n", time.Now().UnixNano())
	if err := run("rebuild, last step changed", false); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "labforge bench layers %s (%s, %s)\n", filepath.Base(specPath), time.Now().Format("2006-01-02"), hostSummary())
	fmt.Fprintln(tw, "SCENARIO\tTIME\tRATIO TO COLD\tSTEPS RUN")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\n", r.name, r.took.Round(10*time.Millisecond), r.took.Seconds()/rows[0].took.Seconds(), strings.Join(r.ran, ", "))
	}
	return tw.Flush()
}

func hostSummary() string {
	accel := "tcg"
	if data, err := os.ReadFile(filepath.Join(paths.State(), "accel.json")); err == nil && strings.Contains(string(data), `"Accel":"kvm"`) {
		accel = "kvm"
	}
	return fmt.Sprintf("%d cpus, %s", runtime.NumCPU(), accel)
}

// benchSuite is n cheap, real checks a lab host answers: these, repeated.
func benchSuite(n int) (*verify.Suite, error) {
	var doc strings.Builder
	doc.WriteString("name: bench\ndefaults: {timeout: 30s, retries: 0}\nchecks:\n")
	for i := range n {
		fmt.Fprintf(&doc, "  - name: check %d\n    command: %q\n", i, benchVerifyChecks[i%len(benchVerifyChecks)])
	}
	return verify.Parse("bench.yaml", []byte(doc.String()))
}

// benchVerifyChecks are cheap, real checks a lab host answers; the bench
// repeats them to the count asked.
var benchVerifyChecks = []string{
	"getenforce", "test -e /etc/passwd", "systemctl is-active ssh", "id student",
	"sysctl -n net.ipv4.ip_forward", "stat -c %a /etc/shadow", "dpkg-query -W openssh-server",
	"ss -H -ltn", "ls -Z /etc/ssh/sshd_config", "uname -r",
}

// Verify times a suite (or n cheap checks) on a running instance: through
// the guest agent in order and concurrent, as scripts, one exec per check,
// and a loop of one ssh per check whose output goes to logPath.
func Verify(ctx context.Context, out io.Writer, name string, n int, suitePath, logPath string) error {
	inst, err := instance.Load(name)
	if err != nil {
		return err
	}
	if logPath == "" {
		logPath = filepath.Join(inst.Dir(), "bench-ssh-loop.log")
	}
	suite, err := benchSuite(n)
	if suitePath != "" {
		// One attempt each: the time of the work, not of waiting for it.
		if suite, err = verify.Load(suitePath); err == nil {
			zero := 0
			suite.Defaults.Retries = &zero
			for i := range suite.Checks {
				suite.Checks[i].Retries = &zero
			}
		}
	}
	if err != nil {
		return err
	}
	n = len(suite.Checks)
	t, err := measureVerify(ctx, inst, suite, logPath)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "labforge bench verify %s on %s (%s, %s)\n", suite.Name, inst.Name, time.Now().Format("2006-01-02"), hostSummary())
	fmt.Fprintln(tw, "TOOL\tCHECKS\tTIME\tPER CHECK\tRATIO TO SSH LOOP\tRATIO TO ONE EXEC PER CHECK")
	for _, r := range []struct {
		name string
		d    time.Duration
	}{
		{"labforge verify (guest agent), in order", t.batch},
		{"labforge verify (guest agent), checks concurrent", t.concurrent},
		{"labforge verify, scripts (no agent)", t.script},
		{"one exec per check, one connection", t.ours},
		{"ssh per check (OpenSSH loop)", t.peer},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.3f\t%.3f\n", r.name, n, r.d.Round(10*time.Millisecond), (r.d / time.Duration(n)).Round(time.Millisecond), r.d.Seconds()/t.peer.Seconds(), r.d.Seconds()/t.ours.Seconds())
	}
	fmt.Fprintf(tw, "peer log: %s\n", logPath)
	return tw.Flush()
}

// verifyTimes are one bench verify run's times of the same checks.
type verifyTimes struct{ batch, concurrent, script, ours, peer time.Duration }

// measureVerify times the suite's checks on inst run by labforge verify as
// it runs (through the guest agent; then again with every check
// concurrent, for checks that only read; then as scripts, as without the
// agent), then one exec per check over one connection (as verify ran
// before batches), then as a loop of one ssh per check, whose output goes
// to logPath.
func measureVerify(ctx context.Context, inst *instance.Instance, suite *verify.Suite, logPath string) (t verifyTimes, err error) {
	cmds := make([]string, len(suite.Checks))
	for i := range suite.Checks {
		if cmds[i], err = suite.Checks[i].ShellCommand(); err != nil {
			return t, err
		}
	}
	client, err := inst.Dial(ctx, time.Minute)
	if err != nil {
		return t, err
	}
	defer client.Close()
	concurrent := *suite
	concurrent.Checks = slices.Clone(suite.Checks)
	for i := range concurrent.Checks {
		concurrent.Checks[i].Concurrent = true
	}
	root := instance.RootRunner{Client: client}
	for _, m := range []struct {
		d     *time.Duration
		r     verify.Runner
		s     *verify.Suite
		batch bool
		what  string
	}{
		{&t.batch, root, suite, true, "in order"},
		{&t.concurrent, root, &concurrent, true, "concurrent"},
		{&t.script, scriptsOnly{root}, suite, true, "scripts"},
		{&t.ours, root, suite, false, "one exec per check"},
	} {
		t0 := time.Now()
		rep := verify.Run(ctx, m.r, m.s, verify.Options{Batch: m.batch})
		*m.d = time.Since(t0)
		if err := rep.Err(); err != nil {
			return t, fmt.Errorf("labforge run, %s: %w", m.what, err)
		}
		if m.batch && m.r == verify.Runner(root) && rep.Via != "guest agent" {
			return t, fmt.Errorf("labforge run, %s: checks ran as %s", m.what, rep.Via)
		}
	}

	// The peer: a shell loop of the system ssh client, one connection per
	// check, as lab hosts are often checked today. Its output is kept; a
	// check's own exit status is the check's business, ssh's (255) is not.
	var script strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&script, "ssh -F %s %s %s; [ $? -ne 255 ] || exit 1\n", inst.SSHConfigPath(), inst.Domain, runx.Quote("sudo -n sh -c "+runx.Quote(c)))
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return t, err
	}
	defer logf.Close()
	loop := exec.CommandContext(ctx, "bash", "-c", script.String())
	loop.Stdout, loop.Stderr = logf, logf
	t0 := time.Now()
	if err := loop.Run(); err != nil {
		return t, fmt.Errorf("ssh loop: %w (log %s)", err, logPath)
	}
	t.peer = time.Since(t0)
	return t, nil
}

// scriptsOnly is a runner without the guest agent: batches run as scripts.
type scriptsOnly struct{ verify.Runner }

// Up brings up the spec's host from cold and restored from its warm state
// (made first, untimed, when the image has none), each verified and then
// removed; their output goes to a log.
func Up(ctx context.Context, out io.Writer, spec *images.Spec) error {
	log, err := os.CreateTemp("", "labforge-bench-up-*.log")
	if err != nil {
		return err
	}
	defer log.Close()
	type row struct {
		name            string
		ready, verified time.Duration
	}
	var rows []row
	run := func(name string, cold bool) error {
		inst := "bench-" + name
		if err := checkNoInstance(inst); err != nil {
			return err
		}
		up, err := labhost.Up(ctx, spec, labhost.Options{Name: inst, Cold: cold, BootTimeout: 15 * time.Minute}, progress.New(log, false, false))
		if err != nil {
			return fmt.Errorf("%s: %w (log %s)", name, err, log.Name())
		}
		up.Client.Close()
		verified := time.Since(up.Started)
		if up.Report != nil {
			verify.WriteTable(log, up.Report)
		}
		conn, cerr := virt.Connect(ctx, true)
		if cerr == nil {
			cerr = instance.Down(conn, inst)
			conn.Close()
		}
		if up.Report != nil && up.Report.Err() != nil {
			return fmt.Errorf("%s: %v (log %s)", name, up.Report.Err(), log.Name())
		}
		if cold == (up.Inst.Restored != "") {
			return fmt.Errorf("%s: the host was %s (log %s)", name, map[bool]string{true: "restored", false: "booted from cold"}[!cold], log.Name())
		}
		rows = append(rows, row{map[bool]string{true: "up --cold", false: "up, restored from the warm state"}[cold], up.SSHReady, verified})
		return cerr
	}
	if err := run("cold", true); err != nil {
		return err
	}
	if err := run("warm", false); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "labforge bench up %s (%s, %s)\n", spec.Name, time.Now().Format("2006-01-02"), hostSummary())
	fmt.Fprintln(tw, "SCENARIO\tSSH-READY\tVERIFIED\tRATIO TO COLD (verified)")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\n", r.name, r.ready.Round(100*time.Millisecond), r.verified.Round(100*time.Millisecond), r.verified.Seconds()/rows[0].verified.Seconds())
	}
	fmt.Fprintf(tw, "log: %s\n", log.Name())
	return tw.Flush()
}

// checkNoInstance refuses to take over an instance the user made.
func checkNoInstance(name string) error {
	if _, err := instance.Load(name); err == nil {
		return fmt.Errorf("instance %s exists: `labforge down %s` first", name, name)
	}
	return nil
}
