package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/internal/dashboard"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

func newClassCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "class", Short: "Stamp out a classroom of identical hosts from one golden image"}
	cmd.AddCommand(newClassCreateCmd(g), newClassStatusCmd(), newClassVerifyCmd(), newClassResetCmd(), newClassStartCmd(), newClassStopCmd(), newClassDestroyCmd(), newClassServeCmd())
	return cmd
}

func newClassCreateCmd(g *globalFlags) *cobra.Command {
	var specPath string
	var students, parallel int
	var hosts []string
	var bootTimeout time.Duration
	var cold bool
	cmd := &cobra.Command{
		Use:   "create NAME --students N [--spec SPEC] [--hosts URI,...]",
		Short: "Build the golden image (cached) and bring up one linked clone per student",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if students < 1 || students > 99 {
				return fmt.Errorf("--students must be between 1 and 99, got %d", students)
			}
			if err := class.ValidName(args[0]); err != nil {
				return err
			}
			// A mistyped URI fails now, not after the build.
			for _, h := range hosts {
				if _, err := virt.ParseURI(h); err != nil {
					return err
				}
			}
			spec, err := loadSpec([]string{specPath})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			res, err := labhost.Build(cmd.Context(), spec, labhost.BuildOptions{}, newPrinter(out, g.quiet))
			if err != nil {
				return err
			}
			// KVM is probed here; a remote hypervisor uses it only if it offers it too.
			accel, _ := virt.ProbeAccel(cmd.Context(), paths.State())
			c := &class.Class{Name: args[0], Spec: filepath.Join(spec.Dir, filepath.Base(spec.Path)), Image: res.Image, Verify: spec.VerifyPath(),
				User: spec.User, Memory: uint(spec.VM.Memory.MiB()), CPUs: uint(spec.VM.CPUs)}
			t0 := time.Now()
			if !cold && hostsThisMachine(hosts) {
				if c.Warm, err = classWarmState(cmd.Context(), spec, res, accel, bootTimeout, newPrinter(out, g.quiet)); err != nil {
					return err
				}
			}
			results, uploads, err := class.Create(cmd.Context(), c, hosts, students, parallel, accel, bootTimeout)
			took := time.Since(t0)
			// Interrupted: the class is gone from every hypervisor already.
			if results == nil && err != nil || cmd.Context().Err() != nil {
				return err
			}
			if progressJSON {
				return classResult(out, c, res, results, took)
			}
			for _, u := range uploads {
				if u.Skipped {
					fmt.Fprintf(out, "golden image %s already on %s\n", u.Volume, virt.Label(u.Host))
					continue
				}
				fmt.Fprintf(out, "golden image %s uploaded to %s in %s (%s)\n", u.Volume, virt.Label(u.Host), u.Took.Round(100*time.Millisecond), progress.Bytes(u.Bytes))
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STUDENT\tHOST\tSTATUS\tSSH\tUP IN\tCLONE DISK")
			failed := 0
			var disk int64
			used := map[string]bool{}
			for _, r := range results {
				if r.Err != nil {
					failed++
					fmt.Fprintf(tw, "%s\t%s\tFAILED\t-\t%s\t-\n", r.Student, virt.Label(r.Host), r.Took.Round(time.Second))
					fmt.Fprintf(os.Stderr, "labforge: %s: %v\n", r.Student, r.Err)
					continue
				}
				disk += r.DiskBytes
				used[r.Host] = true
				if r.Cold != "" {
					fmt.Fprintf(os.Stderr, "labforge: %s: booted from cold: %s\n", r.Student, r.Cold)
				}
				fmt.Fprintf(tw, "%s\t%s\tup\t127.0.0.1:%d\t%s\t%s\n", r.Student, virt.Label(r.Host), r.Instance.SSHPort, r.Took.Round(time.Second), progress.Bytes(r.DiskBytes))
			}
			tw.Flush()
			fmt.Fprintf(out, "class %s: %d of %d hosts up in %s on %d hypervisor(s); clones take %s in all on top of the %s golden image\nroster: %s\n",
				c.Name, len(results)-failed, len(results), took.Round(time.Second), len(used), progress.Bytes(disk),
				progress.Bytes(res.Record.ImageBytes), filepath.Join(class.Dir(c.Name), "roster.md"))
			if err != nil {
				return err
			}
			if failed > 0 {
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&specPath, "spec", defaultSpec, "image spec of the golden image")
	cmd.Flags().IntVar(&students, "students", 0, "number of student hosts")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "hypervisors to spread the hosts over, by free memory and CPUs: qemu:///system, qemu+ssh://[user@]host[:port]/system?keyfile=FILE&known_hosts=FILE (default: this machine)")
	cmd.Flags().IntVar(&parallel, "parallel", 2, "hosts brought up at once")
	cmd.Flags().DurationVar(&bootTimeout, "boot-timeout", 15*time.Minute, "how long each guest may take to answer on SSH")
	cmd.Flags().BoolVar(&cold, "cold", false, "boot every host from cold, neither using nor making a warm state")
	return cmd
}

// classResult ends class create's --progress-json output: what was made.
func classResult(out io.Writer, c *class.Class, res *builder.Result, results []class.HostResult, took time.Duration) error {
	var disk int64
	failed, restored := 0, 0
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed++
		case r.Instance.Restored != "":
			restored++
		}
		disk += max(r.DiskBytes, 0)
	}
	_ = newPrinter(out, false).Result(map[string]any{"class": c.Name, "students": len(results), "failed": failed,
		"restored": restored, "seconds": took.Seconds(), "cloneBytes": disk, "imageBytes": res.Record.ImageBytes})
	if failed > 0 {
		return exitError(1)
	}
	return nil
}

// hostsThisMachine says whether some of a class's hosts run here, where
// warm states are restored.
func hostsThisMachine(hosts []string) bool {
	return len(hosts) == 0 || slices.Contains(hosts, virt.LocalURI)
}

// classWarmState is the warm state a class's hosts here are restored
// from (made now when the image has none), or "" with a line saying why.
func classWarmState(ctx context.Context, spec *images.Spec, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (string, error) {
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

func newClassStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Each host's hypervisor, state, SSH reachability and the host memory its guest holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STUDENT\tHOST\tSTATE\tSSH\tMEMORY\tFROM")
			var total uint64
			for _, st := range class.Status(cmd.Context(), c) {
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
		},
	}
}

func newClassVerifyCmd() *cobra.Command {
	var junitPath, suitePath string
	var parallel int
	cmd := &cobra.Command{
		Use:   "verify NAME [--junit FILE]",
		Short: "Verify every host, and that all run the same image with the same packages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			if suitePath == "" {
				suitePath = c.Verify
			}
			suite, err := labhost.SuiteFor(suitePath, c.Spec, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			reports := class.Verify(cmd.Context(), c, suite, parallel)
			failed := 0
			for _, rep := range reports {
				fmt.Fprintf(cmd.OutOrStdout(), "\n%s on %s\n", rep.Suite, rep.Host)
				if err := verify.WriteTable(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
				if rep.Failed() > 0 {
					failed++
				}
			}
			if junitPath != "" {
				f, err := os.Create(junitPath)
				if err != nil {
					return err
				}
				if err := verify.WriteJUnit(f, reports...); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			if failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: class %s: %d of %d suites failed\n", c.Name, failed, len(reports))
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&junitPath, "junit", "", "write one JUnit test suite per host (and the fingerprint suite) to FILE")
	cmd.Flags().StringVar(&suitePath, "suite", "", "verify suite (default: the spec's)")
	cmd.Flags().IntVar(&parallel, "parallel", 2, "hosts verified at once")
	return cmd
}

func newClassResetCmd() *cobra.Command {
	var parallel int
	cmd := &cobra.Command{
		Use:   "reset NAME STUDENT...",
		Short: "Put students' hosts back to the golden image (new overlay, new keys)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			accel, _ := virt.ProbeAccel(cmd.Context(), paths.State())
			results, err := class.Reset(cmd.Context(), c, args[1:], parallel, accel, 15*time.Minute)
			for _, r := range results {
				if r.Err == nil {
					how := "booted"
					if r.Instance.Restored != "" {
						how = "restored from its warm state"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: back to the golden image (%s) in %s on %s (ssh 127.0.0.1:%d)\n", r.Student, how, r.Took.Round(time.Second), virt.Label(r.Host), r.Instance.SSHPort)
					if r.Cold != "" {
						fmt.Fprintf(os.Stderr, "labforge: %s: booted from cold: %s\n", r.Student, r.Cold)
					}
				}
			}
			return err
		},
	}
	cmd.Flags().IntVar(&parallel, "parallel", 2, "hosts reset at once")
	return cmd
}

func newClassStartCmd() *cobra.Command {
	var parallel int
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Boot the class's stopped hosts again, each on its own disk",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			results, err := class.Start(cmd.Context(), c, nil, parallel, 15*time.Minute)
			for _, r := range results {
				if r.Err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: up in %s on %s (ssh 127.0.0.1:%d)\n", r.Student, r.Took.Round(time.Second), virt.Label(r.Host), r.Instance.SSHPort)
				}
			}
			return err
		},
	}
	cmd.Flags().IntVar(&parallel, "parallel", 2, "hosts started at once")
	return cmd
}

func newClassStopCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Shut every host of the class down, keeping the students' disks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			results, err := class.Stop(cmd.Context(), c, nil, len(c.Students), timeout)
			for _, r := range results {
				if r.Err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: stopped in %s\n", r.Student, r.Took.Round(time.Second))
				}
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long a guest may take to power off before it is pulled")
	return cmd
}

func newClassDestroyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "destroy NAME",
		Short: "Remove every host of the class, and the class",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			if err := class.Destroy(cmd.Context(), c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "class %s destroyed (%d hosts)\n", c.Name, len(c.Students))
			return nil
		},
	}
}

func newClassServeCmd() *cobra.Command {
	o := dashboard.Options{}
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "serve [NAME...]",
		Short: "A live dashboard of classes in the browser: hosts, verify results, course progress, actions",
		Long: `serve shows the classes (all on this machine when none is named) as a web page:
one row per student with the host's state, how to log in, its last verify, and
the course progress its guest records (per exercise: not started, started,
failing with the checks run and hint stage, passed), updated live. Actions
(verify again, reset, start, stop) need the token it prints; read-only views
are open on loopback. Progress exports as /export.csv and /export.json.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := args
			if len(names) == 0 {
				var err error
				if names, err = class.Names(); err != nil {
					return err
				}
			}
			for _, n := range names {
				c, err := class.Load(n)
				if err != nil {
					return err
				}
				o.Classes = append(o.Classes, c)
			}
			if tokenFile != "" {
				data, err := os.ReadFile(tokenFile)
				if err != nil {
					return err
				}
				if o.Token = strings.TrimSpace(string(data)); o.Token == "" {
					return fmt.Errorf("--token-file %s is empty", tokenFile)
				}
			}
			var err error
			if o.Course, err = course(); err != nil {
				return err
			}
			o.Accel, _ = virt.ProbeAccel(cmd.Context(), paths.State())
			o.Log = cmd.ErrOrStderr()
			if h, _, err := net.SplitHostPort(o.Listen); err == nil && h != "localhost" && !net.ParseIP(h).IsLoopback() {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: warning: --listen %s serves plain HTTP: the token crosses the network in clear; prefer the loopback default and an SSH tunnel (ssh -L 7840:127.0.0.1:7840 THIS-HOST)\n", o.Listen)
			}
			o.Ready = func(addr, login string) {
				fmt.Fprintf(cmd.OutOrStdout(), "labforge class serve: %d classes on http://%s/\n  instructor (actions need this, it holds the token): %s\n", len(o.Classes), addr, login)
			}
			return dashboard.Serve(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:7840", "address to serve on (host:port; another than loopback makes every view need the token)")
	cmd.Flags().StringVar(&o.Token, "token", "", "the token actions need (default: a random one, printed; other users see it in ps: prefer --token-file)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from this file")
	cmd.Flags().DurationVar(&o.Interval, "interval", dashboard.DefaultInterval, "how often each host is polled")
	return cmd
}
