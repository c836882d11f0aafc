// Package class stamps out a classroom: one linked clone (a qcow2 overlay
// on the golden image) per student, each with its own name, keys and host
// key, brought up and checked in parallel with a bounded pool.
package class

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/virt"
)

// Class is the record of one classroom, kept as class.json.
type Class struct {
	Name     string    `json:"name"`
	Spec     string    `json:"spec"`
	Image    string    `json:"image"`
	Verify   string    `json:"verify,omitempty"`
	User     string    `json:"user"`
	Memory   uint      `json:"memoryMiB"`
	CPUs     uint      `json:"cpus"`
	Students []string  `json:"students"` // instance names, one per student
	Created  time.Time `json:"created"`
}

// Dir is where the class keeps its record and rosters.
func Dir(name string) string { return filepath.Join(paths.State(), "classes", name) }

// StudentName is the instance name of student i (1-based) of class.
func StudentName(class string, i int) string { return fmt.Sprintf("%s-s%02d", class, i) }

// Load reads a class record.
func Load(name string) (*Class, error) {
	if err := instance.ValidName(name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(Dir(name), "class.json"))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("no class %q (make one with `labforge class create`)", name)
	}
	if err != nil {
		return nil, err
	}
	var c Class
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("class %s: %w", name, err)
	}
	return &c, nil
}

func (c *Class) save() error {
	if err := os.MkdirAll(Dir(c.Name), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(Dir(c.Name), "class.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(Dir(c.Name), "class.json"))
}

// HostResult is what happened to one student's host.
type HostResult struct {
	Student   string
	Instance  *instance.Instance
	Err       error
	Took      time.Duration
	DiskBytes int64 // space the clone's overlay takes on the host
}

// Create brings up n linked clones of c.Image, at most parallel at a time.
// One host's failure is reported and does not stop the others.
func Create(ctx context.Context, conn *virt.Conn, c *Class, n, parallel int, accel virt.Accel, bootTimeout time.Duration) ([]HostResult, error) {
	if err := instance.ValidName(c.Name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(Dir(c.Name), "class.json")); err == nil {
		return nil, fmt.Errorf("class %q exists; destroy it first", c.Name)
	}
	c.Students = nil
	for i := 1; i <= n; i++ {
		c.Students = append(c.Students, StudentName(c.Name, i))
	}
	c.Created = time.Now().UTC()
	// The record goes first, so destroy finds every host of a half-made class.
	if err := c.save(); err != nil {
		return nil, err
	}
	results := forEach(ctx, c.Students, parallel, func(ctx context.Context, s string) HostResult {
		return c.up(ctx, conn, s, accel, bootTimeout)
	})
	return results, writeRosters(c, results)
}

func (c *Class) up(ctx context.Context, conn *virt.Conn, s string, accel virt.Accel, bootTimeout time.Duration) HostResult {
	t0 := time.Now()
	inst, client, err := instance.Up(ctx, conn, instance.UpOptions{
		Name: s, Spec: c.Spec, Image: c.Image, User: c.User, MemoryMiB: c.Memory, CPUs: c.CPUs,
		Accel: accel, BootTimeout: bootTimeout, Verify: c.Verify,
	})
	r := HostResult{Student: s, Instance: inst, Err: err, Took: time.Since(t0)}
	if err == nil {
		client.Close()
		r.DiskBytes = allocated(filepath.Join(inst.Dir(), "disk.qcow2"))
	}
	return r
}

// Reset puts one student's host back to the golden image: a new overlay,
// new keys, a fresh boot.
func Reset(ctx context.Context, conn *virt.Conn, c *Class, student string, accel virt.Accel, bootTimeout time.Duration) (HostResult, error) {
	if !contains(c.Students, student) {
		return HostResult{}, fmt.Errorf("class %s has no student host %q (have %v)", c.Name, student, c.Students)
	}
	if err := instance.Down(conn, student); err != nil {
		return HostResult{}, err
	}
	r := c.up(ctx, conn, student, accel, bootTimeout)
	if r.Err != nil {
		return r, r.Err
	}
	return r, refreshRosters(c)
}

// Destroy removes every host of the class and its record.
func Destroy(conn *virt.Conn, c *Class) error {
	var errs []error
	for _, s := range c.Students {
		if err := instance.Down(conn, s); err != nil && !isNoInstance(err) {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("destroy %s: %v", c.Name, errs)
	}
	return os.RemoveAll(Dir(c.Name))
}

func isNoInstance(err error) bool {
	return err != nil && len(err.Error()) > 12 && err.Error()[:12] == "no instance "
}

// forEach runs fn for each name with at most parallel at once, keeping
// the results in the names' order.
func forEach[T any](ctx context.Context, names []string, parallel int, fn func(context.Context, string) T) []T {
	if parallel < 1 {
		parallel = 1
	}
	out := make([]T, len(names))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = fn(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
