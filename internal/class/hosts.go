package class

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/virt"
)

// Capacity is what a hypervisor offers, as its libvirtd reports it.
type Capacity struct {
	URI     string
	FreeMem uint64 // bytes
	CPUs    int
}

// Place gives each of n students, each wanting mem bytes and cpus vCPUs,
// a host, and returns the host's index per student. A student goes to the
// host with the most memory left once the class's students already placed
// there are counted, in whole students (hosts equal but for a few pages
// are equal); then to the host whose CPUs carry the fewest of the class's
// vCPUs; then to the first given. Equal hosts therefore take turns.
func Place(hosts []Capacity, n int, mem uint64, cpus int) []int {
	if mem == 0 {
		mem = 1
	}
	placedMem := make([]uint64, len(hosts))
	placedCPUs := make([]int, len(hosts))
	slots := func(h int) float64 {
		return math.Floor((float64(hosts[h].FreeMem) - float64(placedMem[h])) / float64(mem))
	}
	load := func(h, other int) int { // (placed+cpus)/CPUs[h], scaled by CPUs[other] to compare
		return (placedCPUs[h] + cpus) * max(hosts[other].CPUs, 1)
	}
	out := make([]int, n)
	for s := range out {
		best := 0
		for h := 1; h < len(hosts); h++ {
			if sh, sb := slots(h), slots(best); sh > sb || sh == sb && load(h, best) < load(best, h) {
				best = h
			}
		}
		out[s] = best
		placedMem[best] += mem
		placedCPUs[best] += cpus
	}
	return out
}

// perHost runs a function once per hypervisor and hands every caller for
// that hypervisor its result: one connection, one golden upload.
type perHost[T any] struct {
	mu sync.Mutex
	m  map[string]*onceResult[T]
}

type onceResult[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (p *perHost[T]) do(uri string, fn func() (T, error)) (T, error) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*onceResult[T]{}
	}
	r := p.m[uri]
	if r == nil {
		r = &onceResult[T]{}
		p.m[uri] = r
	}
	p.mu.Unlock()
	r.once.Do(func() { r.v, r.err = fn() })
	return r.v, r.err
}

// results are the successful results by hypervisor.
func (p *perHost[T]) results() map[string]T {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]T{}
	for uri, r := range p.m {
		if r.err == nil {
			out[uri] = r.v
		}
	}
	return out
}

// conns holds one libvirt connection per hypervisor, opened on first use.
type conns struct{ perHost[*virt.Conn] }

func (cs *conns) get(ctx context.Context, uri string) (*virt.Conn, error) {
	return cs.do(uri, func() (*virt.Conn, error) { return virt.Open(ctx, uri) })
}

func (cs *conns) close() {
	for _, c := range cs.results() {
		c.Close()
	}
}

// State is one student host's state, as class status shows it.
type State struct {
	Student string
	Host    string // the hypervisor, briefly
	State   string // running, stopped, missing, or why its hypervisor cannot tell
	SSH     string
	// Memory is what the running guest's QEMU holds on its hypervisor
	// (resident bytes; 0 when not running or not known).
	Memory uint64
	// Restored names the warm state the host was restored from ("": booted).
	Restored string
}

// Status looks at every host of the class: its domain on its hypervisor,
// and whether its SSH answers.
func Status(ctx context.Context, c *Class) []State {
	var cs conns
	defer cs.close()
	return forEach(ctx, c.Students, 4, func(ctx context.Context, s string) State {
		st := State{Student: s, Host: virt.Label(c.HostOf(s)), State: "missing", SSH: "-"}
		inst, err := instance.Load(s)
		if err != nil {
			return st
		}
		conn, err := cs.get(ctx, c.HostOf(s))
		switch {
		case err != nil:
			st.State = "unknown: " + err.Error()
		case conn.Running(inst.Domain):
			st.State = "running"
			st.Memory, _ = conn.RSS(inst.Domain)
		default:
			st.State = "stopped"
		}
		st.Restored = inst.Restored
		st.SSH = "unreachable"
		if cl, err := inst.Dial(ctx, 10*time.Second); err == nil {
			cl.Close()
			st.SSH = fmt.Sprintf("ok (127.0.0.1:%d)", inst.SSHPort)
		}
		return st
	})
}
