package dashboard

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/labs"
)

// RunOptions are class serve's: Options, with the classes named rather
// than loaded and the token possibly in a file.
type RunOptions struct {
	Options
	Names     []string  // the classes to show; none: every class on this machine
	TokenFile string    // holds the token, when set
	Out       io.Writer // hears the address served and the instructor's login URL
}

// Run fills in what o leaves to this machine (the classes, the token
// from its file, the embedded course, the accelerator) and serves the
// dashboard until ctx ends. Warnings go to o.Log.
func Run(ctx context.Context, o RunOptions) error {
	var err error
	if o.Classes, err = loadClasses(o.Names); err != nil {
		return err
	}
	if o.TokenFile != "" {
		if o.Token, err = readToken(o.TokenFile); err != nil {
			return err
		}
	}
	if o.Course == nil {
		if o.Course, err = labs.Default(); err != nil {
			return fmt.Errorf("course: %w", err)
		}
	}
	o.Accel, _ = virt.ProbeAccel(ctx, paths.State())
	if o.Log == nil {
		o.Log = io.Discard
	}
	if offLoopback(o.Listen) {
		fmt.Fprintf(o.Log, "labforge: warning: --listen %s serves plain HTTP: the token crosses the network in clear; prefer the loopback default and an SSH tunnel (ssh -L 7840:127.0.0.1:7840 THIS-HOST)\n", o.Listen)
	}
	if o.Ready == nil && o.Out != nil {
		o.Ready = func(addr, login string) {
			fmt.Fprintf(o.Out, "labforge class serve: %d classes on http://%s/\n  instructor (actions need this, it holds the token): %s\n", len(o.Classes), addr, login)
		}
	}
	return Serve(ctx, o.Options)
}

// loadClasses loads the named classes, or every class on this machine.
func loadClasses(names []string) ([]*class.Class, error) {
	if len(names) == 0 {
		var err error
		if names, err = class.Names(); err != nil {
			return nil, err
		}
	}
	var cs []*class.Class
	for _, n := range names {
		c, err := class.Load(n)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// readToken reads a token file; an empty one would leave the actions to
// a random token nobody asked for.
func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return tok, nil
}

// offLoopback says whether listen is an address other machines reach,
// where the token would cross the network in clear. An address that
// does not parse is Serve's to refuse.
func offLoopback(listen string) bool {
	h, _, err := net.SplitHostPort(listen)
	return err == nil && h != "localhost" && !net.ParseIP(h).IsLoopback()
}
