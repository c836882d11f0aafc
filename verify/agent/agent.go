// Package agent is labforge's guest agent: the program a verify session
// starts on the guest (uploaded as it starts, removed when it ends) to run
// a suite's checks there. Under emulation every process costs tens of
// milliseconds, so the agent spends none it does not need: typed checks
// (file, sysctl, port, package, service) are read in-process from /proc,
// stat and dpkg's status file, a command made of plain words is executed
// without a shell, and each check's output, exit status and time come back
// framed as JSON over the session's stdout, with no helper processes.
//
// The agent only gathers; the host judges. For a typed check it writes the
// very output the check's shell probe would have written, so the host's
// verdicts and messages are the same whichever way a check ran, and
// anything it cannot answer exactly it hands to the shell probe.
//
// It imports nothing of labforge beyond this package, to stay small.
package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Hello is the agent's first line: the host knows the agent started (and
// speaks this protocol) before it sends a round.
const Hello = "labforge-agent 1"

// Round is one request: the checks due, in suite order.
type Round struct {
	Checks []Item `json:"checks"`
}

// Item is one check to run once.
type Item struct {
	Idx int `json:"idx"`
	// Cmd is the check's shell probe: what runs when the agent has no
	// in-process way to answer it.
	Cmd     string  `json:"cmd"`
	Native  *Native `json:"native,omitempty"`
	Timeout int64   `json:"timeout_ms"`
	// Concurrent runs it beside the checks after it; Barrier waits for
	// every concurrent check before it.
	Concurrent bool `json:"concurrent,omitempty"`
	Barrier    bool `json:"barrier,omitempty"`
}

// Native describes a typed check the agent can answer itself.
type Native struct {
	Kind     string `json:"kind"` // file, sysctl, port, package, service
	Arg      string `json:"arg"`  // path, key, port number, package, unit
	Proto    string `json:"proto,omitempty"`
	SELinux  bool   `json:"selinux,omitempty"`
	Contents bool   `json:"contents,omitempty"`
}

// Frame is one check's outcome; End closes a round.
type Frame struct {
	Idx      int    `json:"idx"`
	Exit     int    `json:"exit"`
	Stdout   []byte `json:"stdout,omitempty"`
	Stderr   []byte `json:"stderr,omitempty"`
	Nanos    int64  `json:"ns"`
	TimedOut bool   `json:"timed_out,omitempty"`
	End      bool   `json:"end,omitempty"`
}

// Limits the agent keeps to.
const (
	// OutputLimit caps each stream of a check, so that one chatty check
	// cannot fill the host's memory; file contents are capped lower.
	OutputLimit = 4 << 20
	// killAfter is how long a timed-out check has between SIGTERM and
	// SIGKILL (timeout -k's).
	killAfter = 5 * time.Second
	// TimeoutExit is the exit status of a check that ran out of time, as
	// timeout(1) gives it.
	TimeoutExit = 124
)

// Serve answers rounds read from in until it ends, writing frames to out.
// When in ends (the host closed the session or gave up), running checks
// are killed and Serve returns.
func Serve(in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &frameWriter{enc: json.NewEncoder(out)}
	if _, err := fmt.Fprintln(out, Hello); err != nil {
		return err
	}
	rounds := make(chan Round)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var r Round
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				readErr <- fmt.Errorf("bad request: %w", err)
				cancel()
				return
			}
			select {
			case rounds <- r:
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		cancel()
	}()
	for {
		select {
		case r := <-rounds:
			runRound(ctx, r, w)
			if err := w.write(Frame{End: true}); err != nil {
				return err
			}
		case err := <-readErr:
			return err
		}
	}
}

// frameWriter writes frames one at a time: concurrent checks finish in
// their own goroutines.
type frameWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *frameWriter) write(f Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(f)
}

// Concurrency bounds the concurrent checks running at once: beyond a few
// per CPU they only queue for it.
var Concurrency = max(2, 2*runtime.NumCPU())

func runRound(ctx context.Context, r Round, w *frameWriter) {
	var bg sync.WaitGroup
	slots := make(chan struct{}, Concurrency)
	st := &state{ctx: ctx, items: r.Checks}
	for i, it := range r.Checks {
		if it.Barrier {
			bg.Wait()
		}
		run := func() {
			start := time.Now()
			f := answer(ctx, it, i, st)
			f.Idx, f.Nanos = it.Idx, time.Since(start).Nanoseconds()
			w.write(f) // a write error ends the session: Serve sees in end too
		}
		if it.Concurrent {
			// Queued for a slot in its own goroutine: the checks after it
			// go on meanwhile.
			bg.Go(func() {
				slots <- struct{}{}
				defer func() { <-slots }()
				run()
			})
		} else {
			run()
		}
	}
	bg.Wait()
}

// state is what the round's typed checks read once and share: every
// service's state (one systemctl) and dpkg's status file. A command may
// change them (systemctl start, apt-get install): after one has run, the
// next typed check reads them again, as its shell probe would.
type state struct {
	ctx   context.Context
	items []Item
	mu    sync.Mutex
	stale bool // a command ran since they were read
	units map[string]unitState
	dpkg  *dpkgStatus
}

func (s *state) commandRan() {
	s.mu.Lock()
	s.stale = true
	s.mu.Unlock()
}

func (s *state) refresh() {
	if s.stale {
		s.units, s.dpkg, s.stale = nil, nil, false
	}
}

// unit is the state of the service check at index i of the round, asking
// systemd for it and every service check after it when needed.
func (s *state) unit(i int, name string) (unitState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	if u, ok := s.units[name]; ok {
		return u, true
	}
	s.units = serviceStates(s.ctx, s.items[i:])
	u, ok := s.units[name]
	return u, ok
}

func (s *state) packages() *dpkgStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh()
	if s.dpkg == nil {
		s.dpkg = readDpkgStatus()
	}
	return s.dpkg
}

// answer runs one check: in-process where it can, else its shell probe.
func answer(ctx context.Context, it Item, i int, st *state) Frame {
	if n := it.Native; n != nil {
		var out string
		ok := false
		switch n.Kind {
		case "file":
			out, ok = fileFacts(n)
		case "sysctl":
			out, ok = sysctlValue(n.Arg)
		case "port":
			out, ok = listening(n.Proto, n.Arg)
		case "package":
			out, ok = st.packages().query(n.Arg)
		case "service":
			var u unitState
			if u, ok = st.unit(i, n.Arg); ok {
				out = "active=" + u.active + "\nenabled=" + u.enabled + "\n"
			}
		}
		if ok {
			return Frame{Stdout: []byte(out)}
		}
	}
	defer st.commandRan()
	return command(ctx, it.Cmd, time.Duration(it.Timeout)*time.Millisecond)
}

// command runs a check's command under its timeout in its own process
// group, stdin /dev/null, stdout and stderr as pipes.
func command(ctx context.Context, cmdline string, timeout time.Duration) Frame {
	var cmd *exec.Cmd
	if argv := plainWords(cmdline); argv != nil {
		cmd = exec.Command(argv[0], argv[1:]...)
	} else {
		cmd = exec.Command("sh", "-c", cmdline)
	}
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background child (setsid -f) may hold the pipes after the check
	// ends; it gets a second, then its output is not waited for.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return Frame{Exit: 127, Stderr: []byte(err.Error() + "\n")}
	}
	pgid := cmd.Process.Pid
	var timedOut bool
	var mu sync.Mutex
	stop := func(why bool) {
		mu.Lock()
		timedOut = timedOut || why
		mu.Unlock()
		syscall.Kill(-pgid, syscall.SIGTERM)
		time.AfterFunc(killAfter, func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	}
	timer := time.AfterFunc(timeout, func() { stop(true) })
	defer context.AfterFunc(ctx, func() { stop(false) })()
	err := cmd.Wait()
	timer.Stop()
	f := Frame{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ee, ok := err.(*exec.ExitError); ok {
		f.Exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			f.Exit = 128 + int(ws.Signal()) // as a shell reports it
		}
	} else if err != nil && err != exec.ErrWaitDelay {
		f.Exit, f.Stderr = 126, append(f.Stderr, []byte(err.Error()+"\n")...)
	}
	mu.Lock()
	defer mu.Unlock()
	if timedOut {
		f.Exit, f.TimedOut = TimeoutExit, true
	}
	return f
}

// capped keeps the first OutputLimit bytes written to it and discards the
// rest, never failing a write (the check would get SIGPIPE).
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := OutputLimit - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// plainWord is a word the shell would pass on unchanged: no quoting,
// expansion, globbing, redirection or operator.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:%,@+-][A-Za-z0-9_./:%,@+=-]*$`)

// shellOnly are the names sh would not run as a program, or runs as a
// builtin that behaves otherwise than the program of that name.
var shellOnly = map[string]bool{
	"cd": true, "exit": true, "export": true, "set": true, "unset": true, "read": true, "eval": true,
	"exec": true, ".": true, "source": true, "alias": true, "unalias": true, "trap": true, "wait": true,
	"shift": true, "return": true, "break": true, "continue": true, "local": true, "readonly": true,
	"type": true, "command": true, "hash": true, "umask": true, "ulimit": true, "times": true,
	"getopts": true, "jobs": true, "fg": true, "bg": true, "kill": true, "echo": true, "printf": true,
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "for": true, "while": true,
	"until": true, "do": true, "done": true, "case": true, "esac": true, "in": true, "!": true,
	"{": true, "}": true, "function": true, "select": true, "time": true,
}

// plainWords returns the argv of a command line that sh would run as one
// program with these words, found on PATH; nil when sh is needed. Each
// shell a check does not need costs a process, tens of milliseconds under
// emulation.
func plainWords(line string) []string {
	words := strings.Fields(line)
	if len(words) == 0 || strings.ContainsAny(line, "\n\r") || shellOnly[words[0]] || strings.Contains(words[0], "=") {
		return nil
	}
	for _, w := range words {
		if !plainWord.MatchString(w) {
			return nil
		}
	}
	if _, err := exec.LookPath(words[0]); err != nil {
		return nil // sh says "not found" its own way
	}
	return words
}

// Main is the agent program's main: `labforge-guest serve`.
func Main(args []string) int {
	if len(args) != 1 || args[0] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: labforge-guest serve (started by labforge verify; reads rounds on stdin)")
		return 2
	}
	// Caught, not ignored: a write to a host that went away fails instead
	// of killing the agent before it kills its checks, and the checks
	// themselves still start with SIGPIPE at its default.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "labforge-guest:", err)
		return 1
	}
	return 0
}
