package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

// All is every instance record plus every labforge domain on c, so that
// the leftovers of a killed run are found too.
func All(c *virt.Conn) ([]string, error) {
	names, err := List()
	if err != nil {
		return nil, err
	}
	doms, err := c.List(DomainPrefix)
	if err != nil {
		return nil, err
	}
	for _, d := range doms {
		names = append(names, strings.TrimPrefix(d, DomainPrefix))
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// Held refuses the guest called name when holder (builder.Holder) names
// another labforge that runs it and removes it when done.
func Held(name string, holder func(string) string) error {
	if h := holder(name); h != "" {
		return fmt.Errorf("%s: held by %s", name, h)
	}
	return nil
}

// DownNames destroys the instances called names on this machine's
// hypervisor (or the one each runs on), saying "NAME: down" of each on
// out; it refuses a name holder names (see Held). With all it takes every
// instance All finds instead, but leaves those holder names, saying to
// whom. It goes on past a failure and returns them all.
func DownNames(ctx context.Context, out io.Writer, names []string, all bool, holder func(string) string) error {
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
		if err := Held(n, holder); err != nil {
			return err
		}
	}
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	if all {
		if names, err = All(conn); err != nil {
			return err
		}
		var free []string
		for _, n := range names {
			if h := holder(n); h != "" {
				fmt.Fprintf(out, "%s: left to %s\n", n, h)
				continue
			}
			free = append(free, n)
		}
		names = free
	}
	var errs []error
	for _, n := range names {
		if err := Down(conn, n); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "%s: down\n", n)
	}
	return errors.Join(errs...)
}

// Destroy is Down on this machine's hypervisor (or the one the instance
// runs on).
func Destroy(ctx context.Context, name string) error {
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	return Down(conn, name)
}

// WriteList prints a table of every instance (All) with its state, SSH
// port, hypervisor, accelerator and image. A guest on another hypervisor
// (a class student's) is asked there, over one connection per host; errw
// says why one cannot be reached, and its guests' state is "unknown".
func WriteList(ctx context.Context, w, errw io.Writer) error {
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	names, err := All(conn)
	if err != nil {
		return err
	}
	remote := map[string]*virt.Conn{}
	defer func() {
		for _, c := range remote {
			if c != nil {
				c.Close()
			}
		}
	}()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSSH\tHOST\tACCEL\tIMAGE")
	for _, n := range names {
		inst, lerr := Load(n)
		on, host := conn, "local"
		if lerr == nil && inst.Host != "" {
			host = virt.Label(inst.Host)
			c, seen := remote[inst.Host]
			if !seen {
				if c, err = virt.Open(ctx, inst.Host); err != nil {
					fmt.Fprintf(errw, "labforge: %s: %v\n", host, err)
				}
				remote[inst.Host] = c
			}
			on = c
		}
		state := "unknown"
		if on != nil {
			state = "stopped"
			if on.Running(DomainPrefix + n) {
				state = "running"
			}
		}
		if lerr != nil {
			inst = nil
		}
		fmt.Fprint(tw, listRow(n, state, host, inst))
	}
	return tw.Flush()
}

// listRow is one line of WriteList's table; inst is nil for a domain
// without a record.
func listRow(name, state, host string, inst *Instance) string {
	if inst == nil {
		return fmt.Sprintf("%s\t%s (stale: no record)\t-\t%s\t-\t-\n", name, state, host)
	}
	return fmt.Sprintf("%s\t%s\t127.0.0.1:%d\t%s\t%s\t%s\n", name, state, inst.SSHPort, host, inst.Accel, inst.Image)
}

// VerifyOptions say which suite Verify runs.
type VerifyOptions struct {
	Suite      string        // a suite file; the one the instance's spec names when ""
	MaxTimeout time.Duration // give no check longer than this to pass (0: each its own)
	// Load reads the suite file for the instance's spec file (labhost's
	// SuiteFor adds the spec's SELinux denial check); verify.Load if nil.
	Load func(suite, spec string) (*verify.Suite, error)
}

// Verify runs a verify suite on the running instance called name, as
// root and in batches over one SSH connection, and returns its report.
func Verify(ctx context.Context, name string, o VerifyOptions) (*verify.Report, error) {
	inst, err := Load(name)
	if err != nil {
		return nil, err
	}
	path := o.Suite
	if path == "" {
		path = inst.VerifyOn
	}
	if path == "" {
		return nil, fmt.Errorf("instance %s has no verify suite; pass --suite FILE", name)
	}
	var suite *verify.Suite
	if o.Load != nil {
		suite, err = o.Load(path, inst.Spec)
	} else {
		suite, err = verify.Load(path)
	}
	if err != nil {
		return nil, err
	}
	suite.CapTimeouts(o.MaxTimeout)
	client, err := inst.Dial(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	rep := verify.Run(ctx, RootRunner{Client: client}, suite, verify.Options{Batch: true})
	rep.Host = inst.Name
	return rep, nil
}

// Login hands the terminal to the system ssh client, set up with the
// instance's key and pinned host key; it returns only when it cannot.
func (i *Instance) Login() error {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("an interactive login needs the ssh client (apt-get install openssh-client); `labforge ssh -- CMD` works without it")
	}
	return syscall.Exec(ssh, []string{"ssh", "-F", i.SSHConfigPath(), i.Domain}, os.Environ())
}

// Exec runs cmd on the guest as the login user, with stdin, stdout and
// stderr, and returns its exit status.
func (i *Instance) Exec(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	client, err := i.Dial(ctx, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	return client.Stream(ctx, cmd, stdin, stdout, stderr)
}
