package virt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// labforge's storage pool on a remote hypervisor, whose QEMU cannot read
// this machine's files: the golden image, the overlays, seeds and consoles
// are volumes there, uploaded or made through libvirt.
const (
	PoolName = "labforge"
	PoolDir  = "/var/lib/libvirt/images/labforge"
)

// Volume is one volume of labforge's pool.
type Volume struct {
	Name, Path string
	Capacity   uint64 // the guest's view: a qcow2's virtual size
	Allocation uint64 // what it takes on the host's disk
	Physical   uint64 // the file's size
	Backing    string // a qcow2 overlay's backing volume path
}

// PoolXML renders labforge's dir pool.
func PoolXML() (string, error) {
	return (&libvirtxml.StoragePool{Type: "dir", Name: PoolName, Target: &libvirtxml.StoragePoolTarget{Path: PoolDir}}).Marshal()
}

// VolumeXML renders a volume of format (qcow2, raw) holding capacity
// bytes; an overlay names the path of its qcow2 backing volume.
func VolumeXML(name, format string, capacity uint64, backing string) (string, error) {
	v := &libvirtxml.StorageVolume{Name: name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}}}
	if backing != "" {
		v.BackingStore = &libvirtxml.StorageVolumeBackingStore{Path: backing, Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}}
	}
	return v.Marshal()
}

// EnsurePool defines, builds and starts labforge's pool where it is
// missing or stopped.
func (c *Conn) EnsurePool() (libvirt.StoragePool, error) {
	c.poolMu.Lock()
	defer c.poolMu.Unlock()
	p, err := c.StoragePoolLookupByName(PoolName)
	if isLibvirtErr(err, libvirt.ErrNoStoragePool) {
		x, xerr := PoolXML()
		if xerr != nil {
			return p, xerr
		}
		if p, err = c.StoragePoolDefineXML(x, 0); err != nil {
			return p, fmt.Errorf("define pool %s on %s: %w", PoolName, c.target.Label(), err)
		}
		if err := c.StoragePoolBuild(p, libvirt.StoragePoolBuildNew); err != nil {
			_ = c.StoragePoolUndefine(p)
			return p, fmt.Errorf("build pool %s (%s) on %s: %w", PoolName, PoolDir, c.target.Label(), err)
		}
	} else if err != nil {
		return p, fmt.Errorf("look up pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	state, _, _, _, err := c.StoragePoolGetInfo(p)
	if err != nil {
		return p, fmt.Errorf("pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	if libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		if err := c.StoragePoolCreate(p, 0); err != nil {
			return p, fmt.Errorf("start pool %s on %s: %w", PoolName, c.target.Label(), err)
		}
	}
	return p, nil
}

// pool is labforge's pool if it is there and running.
func (c *Conn) pool() (libvirt.StoragePool, bool, error) {
	p, err := c.StoragePoolLookupByName(PoolName)
	if isLibvirtErr(err, libvirt.ErrNoStoragePool) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("look up pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	state, _, _, _, err := c.StoragePoolGetInfo(p)
	return p, err == nil && libvirt.StoragePoolState(state) == libvirt.StoragePoolRunning, err
}

// CreateVolume makes a volume in labforge's pool from its XML and
// returns its path on the hypervisor.
func (c *Conn) CreateVolume(xml string) (string, error) {
	p, err := c.EnsurePool()
	if err != nil {
		return "", err
	}
	v, err := c.StorageVolCreateXML(p, xml, 0)
	if err != nil {
		return "", fmt.Errorf("create volume on %s: %w", c.target.Label(), err)
	}
	return c.StorageVolGetPath(v)
}

// UploadVolume creates the volume name and fills it with size bytes from
// r. When the upload fails or ctx ends (Ctrl-C) the volume is deleted.
func (c *Conn) UploadVolume(ctx context.Context, name, format string, capacity, size uint64, r io.Reader) (path string, err error) {
	x, err := VolumeXML(name, format, capacity, "")
	if err != nil {
		return "", err
	}
	if path, err = c.CreateVolume(x); err != nil {
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			if derr := c.DeleteVolume(name); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	v, err := c.volume(name)
	if err != nil {
		return "", err
	}
	c.streamMu.Lock()
	defer c.streamMu.Unlock()
	if err := c.StorageVolUpload(v, ctxReader{ctx, r}, 0, size, 0); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("upload %s to %s: %w", name, c.target.Label(), err)
	}
	return path, nil
}

// UploadFile uploads a local file as the volume name.
func (c *Conn) UploadFile(ctx context.Context, name, format string, capacity uint64, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if capacity == 0 {
		capacity = uint64(st.Size())
	}
	return c.UploadVolume(ctx, name, format, capacity, uint64(st.Size()), f)
}

// ctxReader stops an upload when ctx ends: libvirt then aborts the
// stream on its side.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (c *Conn) volume(name string) (libvirt.StorageVol, error) {
	p, ok, err := c.pool()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	if !ok {
		return libvirt.StorageVol{}, libvirt.Error{Code: uint32(libvirt.ErrNoStorageVol), Message: "no pool " + PoolName}
	}
	return c.StorageVolLookupByName(p, name)
}

// Volume describes the volume called name, or is nil when there is none.
func (c *Conn) Volume(name string) (*Volume, error) {
	v, err := c.volume(name)
	if isLibvirtErr(err, libvirt.ErrNoStorageVol) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s on %s: %w", name, c.target.Label(), err)
	}
	return c.describe(v)
}

func (c *Conn) describe(v libvirt.StorageVol) (*Volume, error) {
	// The flag makes libvirt stat the file afresh: an upload cut short
	// shows as a physical size below the image's.
	_, capacity, alloc, err := c.StorageVolGetInfoFlags(v, uint32(libvirt.StorageVolGetPhysical))
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, err)
	}
	x, err := c.StorageVolGetXMLDesc(v, 0)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, err)
	}
	var d libvirtxml.StorageVolume
	if err := d.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, err)
	}
	out := &Volume{Name: v.Name, Capacity: capacity, Physical: alloc}
	if d.Target != nil {
		out.Path = d.Target.Path
	}
	if d.Allocation != nil {
		out.Allocation = d.Allocation.Value
	}
	if d.BackingStore != nil {
		out.Backing = d.BackingStore.Path
	}
	return out, nil
}

// Volumes lists labforge's pool; none when it is not there.
func (c *Conn) Volumes() ([]Volume, error) {
	p, ok, err := c.pool()
	if err != nil || !ok {
		return nil, err
	}
	if err := c.StoragePoolRefresh(p, 0); err != nil {
		return nil, fmt.Errorf("refresh pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	vols, _, err := c.StoragePoolListAllVolumes(p, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("list pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	var out []Volume
	for _, v := range vols {
		d, err := c.describe(v)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

// DeleteVolume deletes the volume called name; one that is not there is
// not an error.
func (c *Conn) DeleteVolume(name string) error {
	v, err := c.volume(name)
	if isLibvirtErr(err, libvirt.ErrNoStorageVol) {
		return nil
	}
	if err == nil {
		err = c.StorageVolDelete(v, libvirt.StorageVolDeleteNormal)
	}
	if err != nil && !isLibvirtErr(err, libvirt.ErrNoStorageVol) {
		return fmt.Errorf("delete volume %s on %s: %w", name, c.target.Label(), err)
	}
	return nil
}

// RemovePoolIfEmpty stops, deletes (its directory) and undefines
// labforge's pool once it holds no volume.
func (c *Conn) RemovePoolIfEmpty() error {
	c.poolMu.Lock()
	defer c.poolMu.Unlock()
	vols, err := c.Volumes()
	if err != nil || len(vols) > 0 {
		return err
	}
	p, err := c.StoragePoolLookupByName(PoolName)
	if isLibvirtErr(err, libvirt.ErrNoStoragePool) {
		return nil
	}
	if err != nil {
		return err
	}
	if state, _, _, _, err := c.StoragePoolGetInfo(p); err == nil && libvirt.StoragePoolState(state) == libvirt.StoragePoolRunning {
		if err := c.StoragePoolDestroy(p); err != nil {
			return fmt.Errorf("stop pool %s on %s: %w", PoolName, c.target.Label(), err)
		}
	}
	if err := c.StoragePoolDelete(p, libvirt.StoragePoolDeleteNormal); err != nil {
		return fmt.Errorf("delete pool %s (%s) on %s: %w", PoolName, PoolDir, c.target.Label(), err)
	}
	if err := c.StoragePoolUndefine(p); err != nil {
		return fmt.Errorf("undefine pool %s on %s: %w", PoolName, c.target.Label(), err)
	}
	return nil
}

// VolumeTail is the last n bytes of the volume called name.
func (c *Conn) VolumeTail(name string, n uint64) ([]byte, error) {
	c.streamMu.Lock()
	defer c.streamMu.Unlock()
	d, err := c.Volume(name)
	if err != nil || d == nil {
		return nil, errors.Join(err, fmt.Errorf("no volume %s on %s", name, c.target.Label()))
	}
	v, err := c.volume(name)
	if err != nil {
		return nil, err
	}
	off := uint64(0)
	if d.Physical > n {
		off = d.Physical - n
	}
	var b bytes.Buffer
	if err := c.StorageVolDownload(v, &b, off, d.Physical-off, 0); err != nil {
		return nil, fmt.Errorf("read volume %s on %s: %w", name, c.target.Label(), err)
	}
	return b.Bytes(), nil
}

func isLibvirtErr(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

// Qcow2Info reads a qcow2 file's header: the disk's virtual size, and
// whether it has a backing file (a layer, not a whole disk by itself).
func Qcow2Info(path string) (virtualSize uint64, backed bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, false, fmt.Errorf("%s: qcow2 header: %w", path, err)
	}
	if string(h[:4]) != "QFI\xfb" {
		return 0, false, fmt.Errorf("%s: not a qcow2 image", path)
	}
	return binary.BigEndian.Uint64(h[24:32]), binary.BigEndian.Uint64(h[8:16]) != 0, nil
}
