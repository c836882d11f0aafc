package class

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/virt"
)

// WriteStatus writes class status's table: a row per host, then the host
// memory the running guests hold in all.
func WriteStatus(w io.Writer, states []State) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STUDENT\tHOST\tSTATE\tSSH\tMEMORY\tFROM")
	var total uint64
	for _, st := range states {
		mem, from := "-", "cold boot"
		if st.Memory > 0 {
			mem, total = progress.Bytes(int64(st.Memory)), total+st.Memory
		}
		if st.Restored != "" {
			from = "warm state"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Student, st.Host, st.State, st.SSH, mem, from)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%s\t\n", progress.Bytes(int64(total)))
	return tw.Flush()
}

// Action is what a command did to hosts, for WriteResults.
type Action int

const (
	ActionReset Action = iota
	ActionStart
	ActionStop
)

// WriteResults writes a line per host the action succeeded on; a failed
// host is in the error its command returns. A reset host booted from
// cold says why on stderr.
func WriteResults(out, stderr io.Writer, a Action, results []HostResult) {
	for _, r := range results {
		if r.Err != nil {
			continue
		}
		took := r.Took.Round(time.Second)
		switch a {
		case ActionReset:
			how := "booted"
			if r.Instance.Restored != "" {
				how = "restored from its warm state"
			}
			fmt.Fprintf(out, "%s: back to the golden image (%s) in %s on %s (ssh 127.0.0.1:%d)\n", r.Student, how, took, virt.Label(r.Host), r.Instance.SSHPort)
		case ActionStart:
			fmt.Fprintf(out, "%s: up in %s on %s (ssh 127.0.0.1:%d)\n", r.Student, took, virt.Label(r.Host), r.Instance.SSHPort)
		case ActionStop:
			fmt.Fprintf(out, "%s: stopped in %s\n", r.Student, took)
		}
		if a == ActionReset && r.Cold != "" {
			fmt.Fprintf(stderr, "labforge: %s: booted from cold: %s\n", r.Student, r.Cold)
		}
	}
}

// ActOptions say which hosts of class Name an action is for, and where
// WriteResults's lines go.
type ActOptions struct {
	Name     string
	Students []string // none: all
	Parallel int      // hosts at once; 0: all
	// Timeout bounds each host's boot (reset, start) or power-off (stop).
	Timeout     time.Duration
	Out, Stderr io.Writer
}

// Act loads the class, does a to its hosts and writes a line per host it
// succeeded on. The error names each host that failed.
func Act(ctx context.Context, a Action, o ActOptions) error {
	c, err := Load(o.Name)
	if err != nil {
		return err
	}
	if len(o.Students) == 0 {
		o.Students = c.Students
	}
	if o.Parallel == 0 {
		o.Parallel = len(c.Students)
	}
	var results []HostResult
	switch a {
	case ActionReset:
		accel, _ := virt.ProbeAccel(ctx, paths.State())
		results, err = Reset(ctx, c, o.Students, o.Parallel, accel, o.Timeout)
	case ActionStart:
		results, err = Start(ctx, c, o.Students, o.Parallel, o.Timeout)
	case ActionStop:
		results, err = Stop(ctx, c, o.Students, o.Parallel, o.Timeout)
	default:
		return fmt.Errorf("class %s: no action %d", c.Name, a)
	}
	WriteResults(o.Out, o.Stderr, a, results)
	return err
}
