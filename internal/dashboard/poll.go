package dashboard

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/labs"
)

// Student is one row of the dashboard: a student's host as last seen.
type Student struct {
	Class, Name string
	Hypervisor  string
	// State is running, down (its domain is not running), missing (no
	// instance), or what went wrong asking its hypervisor.
	State string
	SSH   string // ok, unreachable, or "-" when down
	Login string // how the instructor logs in
	// Verify is the host's last verify; nil when it had none.
	Verify *class.LastVerify
	// Progress is the course's exercises, in order, as the host records them.
	Progress []labs.Progress
	Activity time.Time // the student's last recorded course activity
	Seen     time.Time // when this row was last refreshed
	Busy     string    // the action running on it ("resetting")
	Last     string    // what the last action said
}

// watcher keeps one student's row fresh: its own loop, its own libvirt and
// SSH connections (reused between polls), so a slow or dead host delays
// nobody else's row.
type watcher struct {
	b       *board
	c       *class.Class
	student string
	conn    *virt.Conn
	client  *sshx.Client
	course  *labs.Course
}

// pollTimeout bounds one poll of one host.
const pollTimeout = 10 * time.Second

func (w *watcher) run(ctx context.Context, every time.Duration, poke <-chan struct{}) {
	defer w.close()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-poke:
		}
	}
}

func (w *watcher) close() {
	if w.client != nil {
		w.client.Close()
		w.client = nil
	}
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// poll refreshes the row: the domain's state from its hypervisor, then
// (when it runs) the course records over SSH, and the last verify.
func (w *watcher) poll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	st := Student{Class: w.c.Name, Name: w.student, Hypervisor: virt.Label(w.c.HostOf(w.student)), State: "missing", SSH: "-", Seen: time.Now()}
	if lv, ok := class.ReadLastVerify(w.c, w.student); ok {
		st.Verify = &lv
	}
	defer func() { w.b.update(st) }()
	inst, err := instance.Load(w.student)
	if err != nil {
		w.close()
		return
	}
	st.Login = "labforge ssh -n " + inst.Name
	if w.conn == nil {
		if w.conn, err = virt.Open(ctx, w.c.HostOf(w.student)); err != nil {
			st.State = "unknown: " + err.Error()
			w.conn = nil
			return
		}
	}
	if !w.conn.Running(inst.Domain) {
		// Running says false also when the connection broke (libvirtd
		// restarted): the next poll asks on a new one.
		st.State = "down"
		w.close()
		return
	}
	st.State, st.SSH = "running", "unreachable"
	if w.client == nil {
		if w.client, err = inst.Dial(ctx, pollTimeout); err != nil {
			w.client = nil
			return
		}
	}
	env := labs.Env{User: inst.User}
	res, err := instance.RootRunner{Client: w.client}.Run(ctx, env.ProgressCommand())
	if err != nil {
		// A reset host has new keys and a new port: dial again next time.
		w.client.Close()
		w.client = nil
		return
	}
	st.SSH = "ok"
	st.Progress = labs.ParseProgress(w.course, res.Stdout)
	for _, p := range st.Progress {
		if p.Activity.After(st.Activity) {
			st.Activity = p.Activity
		}
	}
}

// board is the dashboard's state: every row, and a version that changes
// whenever a row does, for the live page.
type board struct {
	mu      sync.Mutex
	rows    map[string]*Student // by class/student
	version uint64
	changed chan struct{} // closed and replaced on every change
}

func newBoard() *board {
	return &board{rows: map[string]*Student{}, changed: make(chan struct{})}
}

func key(c, s string) string { return c + "/" + s }

// update stores a polled row, keeping what the actions said, and tells
// the live pages when anything a person sees changed.
func (b *board) update(st Student) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.rows[key(st.Class, st.Name)]
	if old != nil {
		st.Busy, st.Last = old.Busy, old.Last
		if sameRow(*old, st) {
			old.Seen = st.Seen
			return
		}
	}
	b.rows[key(st.Class, st.Name)] = &st
	b.bump()
}

// setAction records an action's state on a row. With start, it refuses
// (false) a row that another action holds: two resets of one host at once
// would race each other's domain and disk.
func (b *board) setAction(c, s, busy, last string, start bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rows[key(c, s)]
	if r == nil {
		r = &Student{Class: c, Name: s, State: "unknown", SSH: "-"}
		b.rows[key(c, s)] = r
	}
	if start && r.Busy != "" {
		return false
	}
	r.Busy = busy
	if last != "" {
		r.Last = last
	}
	b.bump()
	return true
}

func (b *board) bump() {
	b.version++
	close(b.changed)
	b.changed = make(chan struct{})
}

// snapshot is a copy of the rows of class c, in the class's order.
func (b *board) snapshot(c *class.Class) []Student {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Student
	for _, s := range c.Students {
		if r := b.rows[key(c.Name, s)]; r != nil {
			out = append(out, *r)
		} else {
			out = append(out, Student{Class: c.Name, Name: s, State: "…", SSH: "-"})
		}
	}
	return out
}

// wait returns the current version and a channel closed at the next change.
func (b *board) wait() (uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.version, b.changed
}

// sameRow says whether two polls of a row would look the same.
func sameRow(a, b Student) bool {
	if a.State != b.State || a.SSH != b.SSH || a.Login != b.Login || a.Busy != b.Busy || a.Last != b.Last || !a.Activity.Equal(b.Activity) {
		return false
	}
	if (a.Verify == nil) != (b.Verify == nil) || (a.Verify != nil && !a.Verify.When.Equal(b.Verify.When)) {
		return false
	}
	return slices.EqualFunc(a.Progress, b.Progress, func(x, y labs.Progress) bool {
		return x.State() == y.State() && x.Attempts == y.Attempts && x.HintStage == y.HintStage && x.Passed == y.Passed && x.Checks == y.Checks
	})
}
