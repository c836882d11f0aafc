package labs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/verify"
)

// Host is the lab host as the course drives it: commands and files as root.
type Host interface {
	verify.Runner
	// Put writes data to the absolute path dst as root, creating its
	// directory, with mode, owned by owner (a user name; "" for root).
	Put(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error
}

// Where the course's files go on the host.
const (
	// GuestCommand is the student's command on the host.
	GuestCommand = "/usr/local/bin/labs"
	// GuestBinary is the course's program (cmd/labforge-labs), which the
	// student's command runs to show and check exercises with labforge's
	// renderer and checks, from the host's copy of the course.
	GuestBinary = "/usr/local/libexec/labforge/labforge-labs"
	// StatusDir keeps the last check of each exercise, for `labs`.
	StatusDir = "/var/lib/labforge/labs"
	// DefaultUser is the student account of the lab host.
	DefaultUser = "student"
)

// Env says whom the course is for on the host.
type Env struct {
	User   string // the student account; DefaultUser if empty
	Status string // where progress and hint stages are kept; StatusDir if empty
}

func (v Env) status() string {
	if v.Status == "" {
		return StatusDir
	}
	return v.Status
}

func (v Env) user() string {
	if v.User == "" {
		return DefaultUser
	}
	return v.User
}

// Home is the student's home directory on the host.
func (v Env) Home() string { return "/home/" + v.user() }

// Dir is where the student works on exercise e.
func (v Env) Dir(e *Exercise) string { return path.Join(v.Home(), "labs", e.ID) }

// Install puts the course on the host: the student's `labs` command, the
// course's program (prog, when not nil and not already there), the host's
// copy of the course (GuestCourseDir) and every exercise's instructions
// under ~/labs/ID/README.md.
func Install(ctx context.Context, h Host, c *Course, v Env, prog []byte) error {
	return install(ctx, h, c, v, prog, true)
}

// InstallInImage is Install on a build guest, whose student account does
// not exist yet: `labs start ID` makes ~/labs/ID on the host.
func InstallInImage(ctx context.Context, h Host, c *Course, prog []byte) error {
	return install(ctx, h, c, Env{}, prog, false)
}

func install(ctx context.Context, h Host, c *Course, v Env, self []byte, home bool) error {
	if self != nil {
		sum := sha256.Sum256(self)
		// 20 MB over SSH is seconds; skip it when the host has this build.
		res, err := h.Run(ctx, "sha256sum "+GuestBinary+" 2>/dev/null")
		if err != nil {
			return fmt.Errorf("install %s: %w", GuestBinary, err)
		}
		if !strings.HasPrefix(res.Stdout, hex.EncodeToString(sum[:])) {
			if err := h.Put(ctx, GuestBinary, self, 0o755, ""); err != nil {
				return fmt.Errorf("install %s: %w", GuestBinary, err)
			}
		}
	}
	// The other files go as one archive: one copy and one command, where
	// a copy and a command each cost about a second under TCG.
	archive, err := courseArchive(c, v, home)
	if err != nil {
		return fmt.Errorf("course files: %w", err)
	}
	if err := h.Put(ctx, courseTar, archive, 0o600, ""); err != nil {
		return fmt.Errorf("install the course: %w", err)
	}
	label := []string{GuestCommand, path.Dir(GuestBinary), GuestCourseDir}
	if home {
		label = append(label, path.Join(v.Home(), "labs"))
	}
	// The host's copy is replaced whole: an exercise renamed or removed
	// goes from it too.
	// Before labforge-labs, hosts ran a whole labforge, solutions inside.
	res, err := h.Run(ctx, "rm -rf "+GuestCourseDir+" && rm -f "+path.Join(path.Dir(GuestBinary), "labforge")+" && "+
		"tar -x -f "+courseTar+" -C / && rm -f "+courseTar+" && "+
		"if command -v restorecon >/dev/null; then restorecon -R "+runx.QuoteAll(label)+"; fi")
	if err != nil {
		return fmt.Errorf("install the course: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("install the course: tar: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}

// courseTar is where Install puts the course's archive before unpacking it.
const courseTar = "/var/lib/labforge/course.tar"

// courseArchive is the tar of the course's files for the host, relative to
// /: the student's command, and the student's ~/labs with the course index
// and each exercise's instructions, owned by the student (tar, as root,
// takes the owner from the name).
func courseArchive(c *Course, v Env, home bool) ([]byte, error) {
	guest, err := Guest()
	if err != nil {
		return nil, err
	}
	hostCopy, err := GuestFiles()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	add := func(name string, data []byte, mode int64, owner string) error {
		hdr := &tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: mode, Size: int64(len(data)), ModTime: now,
			Typeflag: tar.TypeReg, Uname: owner, Gname: owner}
		if data == nil {
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		}
		if owner == "" {
			hdr.Uname, hdr.Gname = "root", "root"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(GuestCommand, guest["labs"], 0o755, ""); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(hostCopy)) {
		if err := add(path.Join(GuestCourseDir, name), hostCopy[name], 0o644, ""); err != nil {
			return nil, err
		}
	}
	if !home {
		err := tw.Close()
		return buf.Bytes(), err
	}
	var index strings.Builder
	index.WriteString("# The container internals course\n\nRun `labs` for the list and your progress. For each exercise, in this order: `labs start ID` sets it up, `labs show ID` reads it, `labs check ID` checks your work.\n\n")
	if err := add(path.Join(v.Home(), "labs"), nil, 0o755, v.user()); err != nil {
		return nil, err
	}
	for _, e := range c.Exercises {
		fmt.Fprintf(&index, "- `%s` (part %d, %s): %s\n", e.ID, e.Part, strings.Join(e.Objectives, ", "), e.Title)
		if err := add(v.Dir(e), nil, 0o755, v.user()); err != nil {
			return nil, err
		}
		if err := add(path.Join(v.Dir(e), "README.md"), []byte(e.Markdown()), 0o644, v.user()); err != nil {
			return nil, err
		}
	}
	if err := add(path.Join(v.Home(), "labs", "README.md"), []byte(index.String()), 0o644, v.user()); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ScriptError is a setup, solution or reset script that failed.
type ScriptError struct {
	Exercise, Script string
	ExitCode         int
	Output           string
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("%s: %s script failed (exit %d): %s", e.Exercise, e.Script, e.ExitCode, lastLines(e.Output, 3))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// prelude is sourced by every script: where the student works, and the
// helpers the exercises share.
func (v Env) prelude(e *Exercise) string { return v.vars(e) + libSh + "\n" }

// vars says where the student works, for scripts and checks alike.
func (v Env) vars(e *Exercise) string {
	return fmt.Sprintf("LAB_ID=%s\nLAB_USER=%s\nLAB_HOME=%s\nLAB_DIR=%s\nexport LAB_ID LAB_USER LAB_HOME LAB_DIR\n",
		runx.Quote(e.ID), runx.Quote(v.user()), runx.Quote(v.Home()), runx.Quote(v.Dir(e)))
}

// The scripts' helpers, embedded apart from the course (see Default).
var (
	//go:embed guest/lib.sh
	libSh string
	//go:embed check.sh
	checkSh string
)

// Suite is e's checks as they run for v (see Exercise.Suite for wait):
// each command after the variables and check.sh's helpers, so checks find
// the student's files wherever the spec's user lives, and compare answers
// without printing them.
func (v Env) Suite(e *Exercise, wait bool) *verify.Suite {
	s := e.Suite(wait)
	pre := v.vars(e) + checkSh + "\n"
	for i := range s.Checks {
		s.Checks[i].Command = pre + s.Checks[i].Command
		s.Checks[i].Secret = true
	}
	return s
}

// ScriptCommand is the shell command that runs one of e's scripts as root:
// bash with -e and -u, the prelude first, stderr merged into stdout so the
// output reads in order.
func (v Env) ScriptCommand(e *Exercise, script string) string {
	return "cd / && exec bash -eu -c " + runx.Quote("exec 2>&1\n"+v.prelude(e)+script)
}

func (v Env) run(ctx context.Context, h Host, e *Exercise, name, script string) (string, error) {
	if strings.TrimSpace(script) == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.ScriptTimeout())
	defer cancel()
	res, err := h.Run(ctx, v.ScriptCommand(e, script))
	out := res.Stdout + res.Stderr
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return out, fmt.Errorf("%s: %s script: timed out after %s", e.ID, name, e.ScriptTimeout())
		}
		return out, fmt.Errorf("%s: %s script: %w", e.ID, name, err)
	}
	if res.ExitCode != 0 {
		return out, &ScriptError{Exercise: e.ID, Script: name, ExitCode: res.ExitCode, Output: out}
	}
	return out, nil
}

// Start copies e's starter files into the student's directory (keeping any
// the student already has) and runs its setup. It returns what setup printed.
func (v Env) Start(ctx context.Context, h Host, e *Exercise) (string, error) {
	dir := v.Dir(e)
	if _, err := v.run(ctx, h, e, "prepare", "install -d -o \"$LAB_USER\" -g \"$LAB_USER\" \"$LAB_HOME/labs\" \"$LAB_DIR\""); err != nil {
		return "", err
	}
	if err := h.Put(ctx, path.Join(dir, "README.md"), []byte(e.Markdown()), 0o644, v.user()); err != nil {
		return "", fmt.Errorf("%s: instructions: %w", e.ID, err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range e.Files {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) > 0 {
		have, err := v.existing(ctx, h, dir, names)
		if err != nil {
			return "", fmt.Errorf("%s: starter files: %w", e.ID, err)
		}
		for _, n := range names {
			if have[n] {
				continue
			}
			mode := os.FileMode(0o644)
			if strings.HasSuffix(n, ".sh") {
				mode = 0o755
			}
			if err := h.Put(ctx, path.Join(dir, n), e.Files[n], mode, v.user()); err != nil {
				return "", fmt.Errorf("%s: starter file %s: %w", e.ID, n, err)
			}
		}
		// Put made any subdirectory as root.
		if _, err := v.run(ctx, h, e, "prepare", "chown -R \"$LAB_USER:$LAB_USER\" \"$LAB_DIR\""); err != nil {
			return "", err
		}
	}
	// When it started, for the class dashboard (and checks that want to
	// know what happened since).
	v.saveRecords(ctx, h, v.startedPath(e), fmt.Sprintf("%d\n", time.Now().Unix()))
	return v.run(ctx, h, e, "setup", e.Setup)
}

// existing reports which of names already exist under dir on the host.
func (v Env) existing(ctx context.Context, h Host, dir string, names []string) (map[string]bool, error) {
	res, err := h.Run(ctx, "cd "+runx.Quote(dir)+" || exit 0; for f in "+runx.QuoteAll(names)+"; do [ -e \"$f\" ] && printf '%s\\n' \"$f\"; done; true")
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, l := range strings.Split(res.Stdout, "\n") {
		if l != "" {
			have[l] = true
		}
	}
	return have, nil
}

// Solve runs e's reference solution.
func (v Env) Solve(ctx context.Context, h Host, e *Exercise) (string, error) {
	return v.run(ctx, h, e, "solution", e.Solution)
}

// Attempt runs a wrong attempt (or any script) as e's scripts run.
func (v Env) Attempt(ctx context.Context, h Host, e *Exercise, name, script string) (string, error) {
	return v.run(ctx, h, e, name, script)
}

// Reset undoes e: its reset script, then the student's directory goes
// (its instructions come back at the next start).
func (v Env) Reset(ctx context.Context, h Host, e *Exercise) (string, error) {
	out, err := v.run(ctx, h, e, "reset", e.Reset)
	if err != nil {
		return out, err
	}
	// Root's copy too: answers written after `sudo -i` land there.
	more, err := v.run(ctx, h, e, "reset", "rm -rf -- \"$LAB_DIR\" \"/root/labs/$LAB_ID\" "+runx.Quote(path.Join(v.status(), e.ID))+" "+runx.Quote(v.hintsPath(e))+" "+runx.Quote(v.startedPath(e)))
	return out + more, err
}

// Check runs e's checks (see Exercise.Suite for wait) and records the
// outcome on the host for the student's `labs` command and the class
// dashboard: passed/checks, when, and how many checks the student ran.
func (v Env) Check(ctx context.Context, h Host, e *Exercise, wait bool, opts verify.Options) *verify.Report {
	st, last := v.readRecords(ctx, h, e)
	s := v.Suite(e, wait)
	stageHints(s, e, st)
	rep := verify.Run(ctx, h, s, opts)
	for _, r := range rep.Results {
		if !r.Passed {
			st[r.Name]++
		}
	}
	status := fmt.Sprintf("%d/%d %s %d\n", rep.Passed(), len(rep.Results), time.Now().UTC().Format(time.RFC3339), last.Attempts+1)
	v.saveRecords(ctx, h, path.Join(v.status(), e.ID), status, v.hintsPath(e), stagesText(e, st))
	return rep
}

// LocalHost runs the course on this machine, as the user labforge runs as
// (root, through the `labs` command's sudo), with sh.
type LocalHost struct{ verify.Local }

// Put writes dst, making its directory.
//
// It runs as root on files in the student's directory: a link the student
// put at dst is refused, not followed (it could point at /etc/shadow).
func (LocalHost) Put(ctx context.Context, dst string, data []byte, mode os.FileMode, owner string) error {
	if err := os.MkdirAll(path.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(dst, mode); err != nil {
		return err
	}
	if owner == "" {
		return nil
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Lchown(dst, uid, gid)
}
