package verify

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/labforge/labforge/verify/agent"
)

// AgentHost is a Runner on a host that can run labforge's guest agent
// (verify/agent): a batch then sends each round to the agent instead of
// running it as a script, and pays no helper process per check.
type AgentHost interface {
	Runner
	// AgentProgram is the agent's executable for this host, gzip
	// compressed (it crosses the connection at each verify); nil when there
	// is none (rounds then run as scripts).
	AgentProgram() []byte
	// StartPiped starts cmd as root with its stdin and stdout as pipes;
	// wait returns its exit status and stderr once it ends.
	StartPiped(ctx context.Context, cmd string) (stdin io.WriteCloser, stdout io.Reader, wait func() (int, string, error), err error)
}

// agentStart is the command that receives the agent on its stdin
// (compressed), runs it
// from a private directory and removes that directory when it ends, so a
// verify leaves nothing on the host. Exit 125: the upload failed.
func agentStart(size int) string {
	return fmt.Sprintf(`d=$(mktemp -d "${TMPDIR:-/tmp}/.labforge-agent.XXXXXX") || exit 125
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP INT TERM
head -c %d | gzip -dc > "$d/labforge-guest" && chmod 700 "$d/labforge-guest" || exit 125
"$d/labforge-guest" serve
`, size)
}

// agentGrace is how long the agent has to end by itself once told to.
const agentGrace = 5 * time.Second

// agentConn is a batch's use of the agent: started at the first round,
// used by every round after it, closed when the batch ends. When the agent
// cannot run on the host (no program, a noexec /tmp, another machine
// type) the batch runs its rounds as scripts; when its session breaks, the
// round's checks fail with the transport error and retry as usual, and the
// next round starts a new session.
type agentConn struct {
	host   AgentHost
	off    bool   // no agent on this host: scripts
	why    string // why not, when off
	stdin  io.WriteCloser
	frames *bufio.Scanner
	wait   func() (int, string, error)
	cancel context.CancelFunc
}

func newAgentConn(r Runner) *agentConn {
	h, ok := r.(AgentHost)
	if !ok || h.AgentProgram() == nil {
		return &agentConn{off: true, why: "no guest agent"}
	}
	return &agentConn{host: h}
}

// start uploads and starts the agent and reads its hello. An error that
// is not the transport's turns the agent off for the batch.
func (a *agentConn) start(ctx context.Context) error {
	prog := a.host.AgentProgram()
	// When ctx ends the agent is told first (its stdin closes: it kills its
	// checks, and its shell removes its directory); the session itself is
	// torn down only if that has not ended it a few seconds later.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stdin, stdout, wait, err := a.host.StartPiped(sctx, agentStart(len(prog)))
	if err != nil {
		cancel()
		return err
	}
	stopTelling := context.AfterFunc(ctx, func() {
		stdin.Close()
		time.AfterFunc(agentGrace, cancel)
	})
	a.stdin, a.wait = stdin, wait
	a.cancel = func() { stopTelling(); cancel() }
	a.frames = bufio.NewScanner(stdout)
	a.frames.Buffer(make([]byte, 64<<10), 4*agent.OutputLimit)
	// Whole before the first round: the agent says hello only once it has
	// all of itself. A shell that failed before reading it ends the write.
	_, werr := stdin.Write(prog)
	if werr == nil && a.frames.Scan() && a.frames.Text() == agent.Hello {
		return nil
	}
	// It did not start: say why from its exit, and do not try again
	// unless the connection itself failed.
	stdin.Close()
	code, stderr, werr := a.end()
	if werr != nil {
		return werr
	}
	a.off = true
	a.why = fmt.Sprintf("guest agent did not start: exit %d: %s", code, firstLine(stderr))
	return errors.New(a.why)
}

// via is how the batch's checks ran, for its report.
func (a *agentConn) via() string {
	if a.off {
		return "scripts (" + a.why + ")"
	}
	return "guest agent"
}

// end waits for the session to finish and forgets it.
func (a *agentConn) end() (int, string, error) {
	if a.wait == nil {
		return 0, "", nil
	}
	done := make(chan struct{})
	var code int
	var stderr string
	var err error
	go func() {
		code, stderr, err = a.wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * agentGrace):
		a.cancel() // an agent that does not end when its stdin does
		<-done
	}
	a.cancel()
	a.stdin, a.frames, a.wait = nil, nil, nil
	return code, stderr, err
}

// close ends the agent: its stdin closes, it kills what still runs and
// exits, and the shell around it removes its directory.
func (a *agentConn) close() {
	if a.stdin != nil {
		a.stdin.Close()
		a.end()
	}
}

// round sends the due checks and settles each frame as it comes, until
// the round's end. An error means the session broke; it is closed.
func (a *agentConn) round(ctx context.Context, due []*batchItem, settle func(batchFrame)) error {
	if a.stdin == nil {
		if err := a.start(ctx); err != nil {
			return err
		}
	}
	req := agent.Round{Checks: make([]agent.Item, 0, len(due))}
	for _, it := range due {
		req.Checks = append(req.Checks, agent.Item{
			Idx: it.idx, Cmd: it.p.cmd, Native: it.check.native(), Timeout: it.given.Milliseconds(),
			Concurrent: it.check.Concurrent, Barrier: it.check.Barrier,
		})
	}
	line, _ := json.Marshal(req)
	err := a.converse(ctx, append(line, '\n'), settle)
	if err != nil {
		a.stdin.Close()
		_, stderr, werr := a.end()
		if werr != nil && ctx.Err() == nil {
			err = werr
		} else if s := firstLine(stderr); s != "" {
			err = fmt.Errorf("%w: %s", err, s)
		}
	}
	return err
}

func (a *agentConn) converse(ctx context.Context, req []byte, settle func(batchFrame)) error {
	var wmu sync.Mutex
	var werr error
	stdin := a.stdin // round may forget the session while this writes
	go func() {
		_, err := stdin.Write(req)
		wmu.Lock()
		werr = err
		wmu.Unlock()
	}()
	for a.frames.Scan() {
		var f agent.Frame
		if err := json.Unmarshal(a.frames.Bytes(), &f); err != nil {
			return fmt.Errorf("guest agent: bad frame: %w", err)
		}
		if f.End {
			return nil
		}
		settle(batchFrame{idx: f.Idx, exit: f.Exit, took: time.Duration(f.Nanos), timedOut: f.TimedOut,
			out: Result{Stdout: string(f.Stdout), Stderr: string(f.Stderr), ExitCode: f.Exit}})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wmu.Lock()
	defer wmu.Unlock()
	if err := a.frames.Err(); err != nil {
		return fmt.Errorf("guest agent: %w", err)
	}
	return errors.Join(errors.New("guest agent: session ended mid-round"), werr)
}

// native is what the agent needs to answer a typed check in-process; nil
// for command checks.
func (c *Check) native() *agent.Native {
	switch c.Type {
	case TypeFile:
		return &agent.Native{Kind: "file", Arg: c.File, SELinux: c.SELinux != "", Contents: c.Contains != nil}
	case TypeSysctl:
		return &agent.Native{Kind: "sysctl", Arg: c.Sysctl}
	case TypePort:
		return &agent.Native{Kind: "port", Arg: fmt.Sprint(c.Port), Proto: strings.ToLower(c.Proto)}
	case TypePackage:
		return &agent.Native{Kind: "package", Arg: c.Package}
	case TypeService:
		return &agent.Native{Kind: "service", Arg: c.Service}
	}
	return nil
}

// CompressAgent is an agent program as AgentProgram gives it.
func CompressAgent(prog []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(prog)
	zw.Close()
	return b.Bytes()
}
