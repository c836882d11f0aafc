// Package class stamps out a classroom: one linked clone (a qcow2 overlay
// on the golden image) per student, each with its own name, keys and host
// key, spread over one or more hypervisors, brought up and checked in
// parallel with a bounded pool.
package class

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/internal/warm"
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
	// Hosts maps each student to its hypervisor's URI, for a class made
	// with --hosts; a student not in it runs on this machine.
	Hosts map[string]string `json:"hosts,omitempty"`
	// Golden is the golden image's volume on remote hypervisors, named by
	// the image's sha256.
	Golden string `json:"golden,omitempty"`
	// Warm is the warm state the class's hosts on this machine are
	// restored from (create and reset); "" boots them from cold.
	Warm string `json:"warm,omitempty"`
}

// Names lists the classes on this machine.
func Names() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(paths.State(), "classes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(paths.State(), "classes", e.Name(), "class.json")); err == nil {
			names = append(names, e.Name())
		}
	}
	return names, err
}

// Dir is where the class keeps its record and rosters.
func Dir(name string) string { return filepath.Join(paths.State(), "classes", name) }

// ValidName checks a class name: a valid instance name that leaves room
// for the students' suffix ("-s01").
func ValidName(name string) error {
	if err := instance.ValidName(name); err != nil {
		return err
	}
	if err := instance.Reserved(name); err != nil {
		return fmt.Errorf("class %w", err)
	}
	if err := instance.ValidName(StudentName(name, 99)); err != nil {
		return fmt.Errorf("class name %q is too long: its students' hosts (%s) must be valid instance names (at most 41 characters)", name, StudentName(name, 99))
	}
	return nil
}

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
	Host      string // the hypervisor's URI
	Instance  *instance.Instance
	Err       error
	Took      time.Duration
	DiskBytes int64 // space the clone's overlay takes on its hypervisor
	// Cold says why a host that could have been restored was booted
	// from cold ("" when restored, or never meant to be).
	Cold string
}

// Upload is the golden image's trip to one remote hypervisor.
type Upload struct {
	Host    string // the hypervisor's URI
	Volume  string
	Bytes   int64
	Took    time.Duration
	Skipped bool // the volume was there already
}

// HostOf is the URI of the hypervisor that runs student s.
func (c *Class) HostOf(s string) string {
	if h := c.Hosts[s]; h != "" {
		return h
	}
	return virt.LocalURI
}

// Create brings up n linked clones of c.Image spread over the hypervisors
// hosts (default: this machine), at most parallel at a time. The golden
// image goes to each remote hypervisor once. One host's failure is
// reported and does not stop the others; Ctrl-C removes the whole class.
func Create(ctx context.Context, c *Class, hosts []string, n, parallel int, accel virt.Accel, bootTimeout time.Duration) ([]HostResult, []Upload, error) {
	if err := ValidName(c.Name); err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(filepath.Join(Dir(c.Name), "class.json")); err == nil {
		return nil, nil, fmt.Errorf("class %q exists; destroy it first", c.Name)
	}
	var uniq []string // a host named twice is one host
	for _, h := range hosts {
		if !slices.Contains(uniq, h) {
			uniq = append(uniq, h)
		}
	}
	if hosts = uniq; len(hosts) == 0 {
		hosts = []string{virt.LocalURI}
	}
	var cs conns
	defer cs.close()
	// Every hypervisor answers, and says what it has free, before
	// anything is made.
	caps := make([]Capacity, len(hosts))
	var remotes []*virt.Conn
	for i, h := range hosts {
		conn, err := cs.get(ctx, h)
		if err != nil {
			return nil, nil, err
		}
		if caps[i], err = capacityOf(conn); err != nil {
			return nil, nil, err
		}
		if conn.Remote() {
			remotes = append(remotes, conn)
		}
	}
	c.Students, c.Hosts = nil, nil
	for i, h := range Place(caps, n, uint64(c.Memory)<<20, int(c.CPUs)) {
		s := StudentName(c.Name, i+1)
		c.Students = append(c.Students, s)
		if len(hosts) > 1 || hosts[0] != virt.LocalURI {
			if c.Hosts == nil {
				c.Hosts = map[string]string{}
			}
			c.Hosts[s] = hosts[h]
		}
	}
	if len(remotes) > 0 {
		sum, err := fsx.SHA256(c.Image)
		if err != nil {
			return nil, nil, fmt.Errorf("golden image: %w", err)
		}
		c.Golden = "golden-" + sum + ".qcow2"
	}
	c.Created = time.Now().UTC()
	// The record goes first, so destroy finds every host of a half-made class.
	if err := c.save(); err != nil {
		return nil, nil, err
	}
	var goldens perHost[Upload]
	results := forEach(ctx, c.Students, parallel, func(ctx context.Context, s string) HostResult {
		return c.up(ctx, &cs, &goldens, s, accel, bootTimeout)
	})
	if ctx.Err() != nil {
		return results, nil, errors.Join(ctx.Err(), destroy(context.WithoutCancel(ctx), c, &cs))
	}
	var uploads []Upload
	for _, u := range goldens.results() {
		uploads = append(uploads, u)
	}
	sort.Slice(uploads, func(i, j int) bool { return uploads[i].Host < uploads[j].Host })
	// A golden that no student of this class got to use goes again (a
	// reset uploads it anew), and so does an empty pool.
	var errs []error
	for _, conn := range remotes {
		errs = append(errs, dropGolden(conn, c.Golden))
	}
	return results, uploads, errors.Join(append(errs, writeRosters(c, results))...)
}

// capacityOf is what a hypervisor's libvirtd reports free.
func capacityOf(conn *virt.Conn) (Capacity, error) {
	free, err := conn.NodeGetFreeMemory()
	if err != nil {
		return Capacity{}, fmt.Errorf("free memory of %s: %w", conn.Target().Label(), err)
	}
	_, _, cpus, _, _, _, _, _, err := conn.NodeGetInfo()
	if err != nil {
		return Capacity{}, fmt.Errorf("CPUs of %s: %w", conn.Target().Label(), err)
	}
	return Capacity{URI: conn.URI, FreeMem: free, CPUs: int(cpus)}, nil
}

func (c *Class) up(ctx context.Context, cs *conns, goldens *perHost[Upload], s string, accel virt.Accel, bootTimeout time.Duration) HostResult {
	t0 := time.Now()
	r := HostResult{Student: s, Host: c.HostOf(s)}
	conn, err := cs.get(ctx, r.Host)
	o := instance.UpOptions{
		Name: s, Spec: c.Spec, Image: c.Image, User: c.User, MemoryMiB: c.Memory, CPUs: c.CPUs,
		Accel: accel, BootTimeout: bootTimeout, Verify: c.Verify,
	}
	if err == nil && conn.Remote() {
		if accel == virt.KVM && !conn.OffersKVM() {
			o.Accel = virt.TCG
		}
		o.Golden = c.Golden
		_, err = goldens.do(r.Host, func() (Upload, error) { return uploadGolden(ctx, conn, c.Image, c.Golden) })
	}
	if err != nil {
		r.Err, r.Took = err, time.Since(t0)
		return r
	}
	var inst *instance.Instance
	var client *sshx.Client
	if c.Warm != "" && !conn.Remote() {
		// Restored when the state is still good; a state that fails is
		// said, and the host boots from cold instead.
		snap, werr := warm.Get(c.Warm, time.Now())
		if werr == nil {
			inst, client, werr = instance.Restore(ctx, conn, instance.RestoreOptions{Name: s, Spec: c.Spec, Image: c.Image,
				Verify: c.Verify, From: *snap})
		}
		if werr != nil && ctx.Err() == nil {
			r.Cold = werr.Error()
			inst, client, err = instance.Up(ctx, conn, o)
		} else {
			err = werr
		}
	} else {
		inst, client, err = instance.Up(ctx, conn, o)
	}
	r.Instance, r.Err, r.Took = inst, err, time.Since(t0)
	if err == nil {
		client.Close()
		r.DiskBytes = inst.DiskBytes(conn)
	}
	return r
}

// uploadGolden puts the class image on a remote hypervisor as the volume
// name (named by the image's sha256), unless one that a finished upload made is
// there already. An image that is a layer over others is flattened first:
// the hypervisor needs the whole disk.
func uploadGolden(ctx context.Context, conn *virt.Conn, image, name string) (Upload, error) {
	t0 := time.Now()
	u := Upload{Host: conn.URI, Volume: name}
	capacity, backed, err := virt.Qcow2Info(image)
	if err != nil {
		return u, err
	}
	src := image
	if backed {
		release, err := builder.UseCache(paths.Cache())
		if err != nil {
			return u, err
		}
		defer release()
		tmp, err := os.MkdirTemp(paths.Cache(), "upload-")
		if err != nil {
			return u, err
		}
		defer os.RemoveAll(tmp)
		src = filepath.Join(tmp, "golden.qcow2")
		if err := runx.Run(ctx, nil, nil, "qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", image, src); err != nil {
			return u, fmt.Errorf("flatten %s: %w", image, err)
		}
	}
	st, err := os.Stat(src)
	if err != nil {
		return u, err
	}
	u.Bytes = st.Size()
	v, err := conn.Volume(name)
	if err != nil {
		return u, err
	}
	// The volume is named by the image's sha256 and an upload writes it front
	// to back (a failed one is deleted), so one of the full size whose last
	// bytes are the image's was made by an upload that ended: reading the
	// whole volume back to hash it would cost as much as sending it again.
	if v != nil && v.Physical == uint64(st.Size()) {
		same, err := sameTail(conn, name, src, 1<<20)
		if err != nil {
			return u, err
		}
		if same {
			u.Skipped, u.Took = true, time.Since(t0)
			return u, nil
		}
		// Never delete one that students' disks stand on.
		vols, err := conn.Volumes()
		if err != nil {
			return u, err
		}
		if users := backedBy(vols, v.Path); users > 0 {
			return u, fmt.Errorf("golden volume %s on %s differs from %s in its last MiB and backs %d students' disks there: it is damaged; remove those classes first", name, conn.Target().Label(), image, users)
		}
	}
	// A shorter or different one is what an upload cut short left.
	if err := conn.DeleteVolume(name); err != nil {
		return u, err
	}
	if _, err := conn.UploadFile(ctx, name, "qcow2", capacity, src); err != nil {
		return u, fmt.Errorf("golden image to %s: %w", conn.Target().Label(), err)
	}
	u.Took = time.Since(t0)
	return u, nil
}

// sameTail says whether the volume called name ends with the same n bytes
// as the local file.
func sameTail(conn *virt.Conn, name, file string, n int64) (bool, error) {
	remote, err := conn.VolumeTail(name, uint64(n))
	if err != nil {
		return false, err
	}
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	local := make([]byte, min(n, st.Size()))
	if _, err := f.ReadAt(local, st.Size()-int64(len(local))); err != nil {
		return false, err
	}
	return bytes.Equal(remote, local), nil
}

// backedBy counts the volumes of vols whose backing file is path.
func backedBy(vols []virt.Volume, path string) int {
	n := 0
	for _, v := range vols {
		if v.Backing == path {
			n++
		}
	}
	return n
}

// dropGolden deletes the golden volume once no overlay on that hypervisor
// is backed by it (another class's may be), and labforge's pool once it
// holds nothing.
func dropGolden(conn *virt.Conn, name string) error {
	vols, err := conn.Volumes()
	if err != nil {
		return err
	}
	for _, g := range vols {
		if g.Name != name {
			continue
		}
		if backedBy(vols, g.Path) > 0 {
			return nil
		}
		if err := conn.DeleteVolume(name); err != nil {
			return err
		}
	}
	return conn.RemovePoolIfEmpty()
}

// Reset puts students' hosts back to the golden image: a new overlay, new
// keys, a fresh boot, on the same hypervisor; at most parallel at a time.
// Every named student is checked before any host is touched.
func Reset(ctx context.Context, c *Class, students []string, parallel int, accel virt.Accel, bootTimeout time.Duration) ([]HostResult, error) {
	if err := c.check(students); err != nil {
		return nil, err
	}
	var cs conns
	defer cs.close()
	var goldens perHost[Upload]
	results := forEach(ctx, students, parallel, func(ctx context.Context, s string) HostResult {
		conn, err := cs.get(ctx, c.HostOf(s))
		if err != nil {
			return HostResult{Student: s, Host: c.HostOf(s), Err: err}
		}
		// A host that failed to come up has nothing to take down.
		if err := instance.Down(conn, s); err != nil && !errors.Is(err, instance.ErrNoInstance) {
			return HostResult{Student: s, Host: c.HostOf(s), Err: err}
		}
		return c.up(ctx, &cs, &goldens, s, accel, bootTimeout)
	})
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Student, r.Err))
		}
	}
	return results, errors.Join(append(errs, refreshRosters(c))...)
}

// check refuses a student the class does not have.
func (c *Class) check(students []string) error {
	for _, s := range students {
		if !slices.Contains(c.Students, s) {
			return fmt.Errorf("class %s has no student host %q (have %v)", c.Name, s, c.Students)
		}
	}
	return nil
}

// Start boots the class's stopped hosts again on their own disks (after a
// host reboot, say), at most parallel at a time; hosts already up stay.
// students picks some (nil: all).
func Start(ctx context.Context, c *Class, students []string, parallel int, bootTimeout time.Duration) ([]HostResult, error) {
	return eachHost(ctx, c, students, parallel, func(ctx context.Context, conn *virt.Conn, s string) (*instance.Instance, error) {
		inst, client, err := instance.Start(ctx, conn, s, bootTimeout)
		if err == nil {
			client.Close()
		}
		return inst, err
	})
}

// Stop shuts hosts of the class down cleanly, keeping their disks.
// students picks some (nil: all).
func Stop(ctx context.Context, c *Class, students []string, parallel int, timeout time.Duration) ([]HostResult, error) {
	return eachHost(ctx, c, students, parallel, func(ctx context.Context, conn *virt.Conn, s string) (*instance.Instance, error) {
		return nil, instance.Stop(ctx, conn, s, timeout)
	})
}

// eachHost runs fn for every student on its hypervisor, at most parallel
// at a time; one host's failure stops none of the others.
func eachHost(ctx context.Context, c *Class, students []string, parallel int, fn func(context.Context, *virt.Conn, string) (*instance.Instance, error)) ([]HostResult, error) {
	if students == nil {
		students = c.Students
	}
	if err := c.check(students); err != nil {
		return nil, err
	}
	var cs conns
	defer cs.close()
	results := forEach(ctx, students, parallel, func(ctx context.Context, s string) HostResult {
		t0 := time.Now()
		r := HostResult{Student: s, Host: c.HostOf(s)}
		conn, err := cs.get(ctx, r.Host)
		if err == nil {
			r.Instance, err = fn(ctx, conn, s)
		}
		r.Err, r.Took = err, time.Since(t0)
		return r
	})
	return results, joinHostErrors(results)
}

func joinHostErrors(results []HostResult) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Student, r.Err))
		}
	}
	return errors.Join(errs...)
}

// Destroy removes every host of the class on every hypervisor, the golden
// volumes no other class uses, and the class's record.
func Destroy(ctx context.Context, c *Class) error {
	var cs conns
	defer cs.close()
	return destroy(ctx, c, &cs)
}

func destroy(ctx context.Context, c *Class, cs *conns) error {
	byHost := map[string][]string{}
	var hosts []string
	for _, s := range c.Students {
		h := c.HostOf(s)
		if byHost[h] == nil {
			hosts = append(hosts, h)
		}
		byHost[h] = append(byHost[h], s)
	}
	// Hypervisors in parallel: one that does not answer keeps none of the
	// others' guests alive.
	errs := forEach(ctx, hosts, len(hosts), func(ctx context.Context, h string) error {
		conn, err := cs.get(ctx, h)
		if err != nil {
			return err
		}
		var errs []error
		for _, s := range byHost[h] {
			if err := instance.Down(conn, s); err != nil && !errors.Is(err, instance.ErrNoInstance) {
				errs = append(errs, fmt.Errorf("%s: %w", s, err))
			}
		}
		if conn.Remote() && len(errs) == 0 {
			errs = append(errs, dropGolden(conn, c.Golden))
		}
		return errors.Join(errs...)
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy %s: %w", c.Name, err)
	}
	return os.RemoveAll(Dir(c.Name))
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
