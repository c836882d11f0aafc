package class

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/virt"
)

// SpecOptions say what class create makes: a class of Students hosts
// from the golden image that the spec at SpecPath builds.
type SpecOptions struct {
	Name        string
	SpecPath    string
	Students    int      // 1 to 99: the students' suffix has two digits
	Hosts       []string // hypervisor URIs to spread the hosts over; none: this machine
	Parallel    int      // hosts brought up at once
	BootTimeout time.Duration
	Cold        bool // boot every host from cold, neither using nor making a warm state
	// JSON reports the class as the printer's result line, for tools;
	// else a table goes to Out, each failed host's error and each cold
	// boot's reason to Stderr.
	JSON        bool
	Out, Stderr io.Writer
}

// validate refuses what would fail only after the build.
func (o SpecOptions) validate() error {
	if o.Students < 1 || o.Students > 99 {
		return fmt.Errorf("--students must be between 1 and 99, got %d", o.Students)
	}
	if err := ValidName(o.Name); err != nil {
		return err
	}
	for _, h := range o.Hosts {
		if _, err := virt.ParseURI(h); err != nil {
			return err
		}
	}
	return nil
}

// Created is what class create made: the class, each host, and the
// golden image's trips to remote hypervisors.
type Created struct {
	Class      *Class
	Results    []HostResult
	Uploads    []Upload
	Took       time.Duration // bringing the hosts up, after the build and warm state
	ImageBytes int64         // the golden image's size
}

// CreateFromSpec builds the spec's golden image (cached), makes its warm
// state when hosts run here, brings up the class and reports it. It
// returns how many hosts failed, which the report shows; the error is
// what else went wrong (in JSON, only what stopped the class being made).
func CreateFromSpec(ctx context.Context, o SpecOptions, p *progress.Printer) (int, error) {
	m, err := create(ctx, o, p)
	if m == nil {
		return 0, err
	}
	if o.JSON {
		return m.Failed(), p.Result(m.Result())
	}
	if werr := m.WriteText(o.Out, o.Stderr); err == nil {
		err = werr
	}
	return m.Failed(), err
}

// create makes the class. A nil Created means nothing is left to report:
// the class was never made, or Ctrl-C removed it from every hypervisor.
// Otherwise the error is what went wrong besides the hosts' own failures,
// which are in Results.
func create(ctx context.Context, o SpecOptions, p *progress.Printer) (*Created, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	spec, err := images.Load(o.SpecPath)
	if err != nil {
		return nil, err
	}
	res, err := labhost.Build(ctx, spec, labhost.BuildOptions{}, p)
	if err != nil {
		return nil, err
	}
	// KVM is probed here; a remote hypervisor uses it only if it offers it too.
	accel, _ := virt.ProbeAccel(ctx, paths.State())
	c := &Class{Name: o.Name, Spec: filepath.Join(spec.Dir, filepath.Base(spec.Path)), Image: res.Image, Verify: spec.VerifyPath(),
		User: spec.User, Memory: uint(spec.VM.Memory.MiB()), CPUs: uint(spec.VM.CPUs)}
	t0 := time.Now()
	if !o.Cold && hostsThisMachine(o.Hosts) {
		if c.Warm, err = warmState(ctx, spec, res, accel, o.BootTimeout, p); err != nil {
			return nil, err
		}
	}
	results, uploads, err := Create(ctx, c, o.Hosts, o.Students, o.Parallel, accel, o.BootTimeout)
	took := time.Since(t0)
	if results == nil && err != nil || ctx.Err() != nil {
		return nil, err
	}
	return &Created{Class: c, Results: results, Uploads: uploads, Took: took, ImageBytes: res.Record.ImageBytes}, err
}

// hostsThisMachine says whether some of a class's hosts run here, where
// warm states are restored.
func hostsThisMachine(hosts []string) bool {
	return len(hosts) == 0 || slices.Contains(hosts, virt.LocalURI)
}

// warmState is the warm state a class's hosts here are restored from
// (made now when the image has none), or "" with a note saying why.
func warmState(ctx context.Context, spec *images.Spec, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (string, error) {
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	snap, why, _, err := labhost.WarmState(ctx, conn, spec, nil, res, accel, bootTimeout, p)
	if err != nil || snap == nil {
		if why != "" {
			p.Note("cold boots: %s", why)
		}
		return "", err
	}
	return snap.ID, nil
}

// Failed is how many hosts did not come up.
func (m *Created) Failed() int {
	n := 0
	for _, r := range m.Results {
		if r.Err != nil {
			n++
		}
	}
	return n
}

// WriteText tells a person what was made: the uploads, a table of the
// hosts, and a summary; each failed host's error goes to stderr.
func (m *Created) WriteText(out, stderr io.Writer) error {
	for _, u := range m.Uploads {
		if u.Skipped {
			fmt.Fprintf(out, "golden image %s already on %s\n", u.Volume, virt.Label(u.Host))
			continue
		}
		fmt.Fprintf(out, "golden image %s uploaded to %s in %s (%s)\n", u.Volume, virt.Label(u.Host), u.Took.Round(100*time.Millisecond), progress.Bytes(u.Bytes))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STUDENT\tHOST\tSTATUS\tSSH\tUP IN\tCLONE DISK")
	var disk int64
	used := map[string]bool{}
	for _, r := range m.Results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\tFAILED\t-\t%s\t-\n", r.Student, virt.Label(r.Host), r.Took.Round(time.Second))
			fmt.Fprintf(stderr, "labforge: %s: %v\n", r.Student, r.Err)
			continue
		}
		disk += r.DiskBytes
		used[r.Host] = true
		if r.Cold != "" {
			fmt.Fprintf(stderr, "labforge: %s: booted from cold: %s\n", r.Student, r.Cold)
		}
		fmt.Fprintf(tw, "%s\t%s\tup\t127.0.0.1:%d\t%s\t%s\n", r.Student, virt.Label(r.Host), r.Instance.SSHPort, r.Took.Round(time.Second), progress.Bytes(r.DiskBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "class %s: %d of %d hosts up in %s on %d hypervisor(s); clones take %s in all on top of the %s golden image\nroster: %s\n",
		m.Class.Name, len(m.Results)-m.Failed(), len(m.Results), m.Took.Round(time.Second), len(used), progress.Bytes(disk),
		progress.Bytes(m.ImageBytes), filepath.Join(Dir(m.Class.Name), "roster.md"))
	return err
}

// Result is what --progress-json's last line says was made; the
// benchmarks read its keys.
func (m *Created) Result() map[string]any {
	var disk int64
	restored := 0
	for _, r := range m.Results {
		if r.Err == nil && r.Instance.Restored != "" {
			restored++
		}
		disk += max(r.DiskBytes, 0)
	}
	return map[string]any{"class": m.Class.Name, "students": len(m.Results), "failed": m.Failed(),
		"restored": restored, "seconds": m.Took.Seconds(), "cloneBytes": disk, "imageBytes": m.ImageBytes}
}
