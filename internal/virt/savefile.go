package virt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// A libvirt save file (libvirt's src/qemu/qemu_saveimage.h, version 2) is a
// fixed header, the domain XML and a "cookie" (NUL-terminated, then zero
// padding, data_len bytes in all), then QEMU's migration stream. Restore
// refuses an XML whose UUID differs from the file's, so each clone of one
// saved guest gets its own file: a new header and XML before the same stream.
const (
	saveMagic   = "LibvirtQemudSave"
	saveVersion = 2
	// the header: magic, then version, data_len, was_running, format,
	// cookieOffset and 14 unused uint32
	saveHeaderLen = len(saveMagic) + 4*5 + 4*14
	// libvirt leaves this much room after the XML for later edits.
	savePad = 64 * 1024
)

// SaveImage is what a save file holds before its memory stream.
type SaveImage struct {
	XML        string
	Cookie     string
	WasRunning bool
	Format     uint32 // 0: raw (the only one labforge writes)
	// StreamOffset is where QEMU's migration stream starts in the file.
	StreamOffset int64
}

// ReadSaveImage reads the header of the save file at path.
func ReadSaveImage(path string) (*SaveImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, saveHeaderLen)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, fmt.Errorf("%s: not a libvirt save file: %w", path, err)
	}
	if string(hdr[:len(saveMagic)]) != saveMagic {
		return nil, fmt.Errorf("%s: not a complete libvirt save file (magic %q)", path, hdr[:len(saveMagic)])
	}
	le := binary.LittleEndian
	fields := hdr[len(saveMagic):]
	version, dataLen, running, format, cookieOff := le.Uint32(fields), le.Uint32(fields[4:]), le.Uint32(fields[8:]), le.Uint32(fields[12:]), le.Uint32(fields[16:])
	if version != saveVersion {
		return nil, fmt.Errorf("%s: save file version %d, labforge reads %d", path, version, saveVersion)
	}
	if dataLen == 0 || dataLen > 64<<20 || cookieOff > dataLen {
		return nil, fmt.Errorf("%s: save file header is damaged (data length %d, cookie at %d)", path, dataLen, cookieOff)
	}
	data := make([]byte, dataLen)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: save file truncated in its XML: %w", path, err)
	}
	xmlEnd := dataLen
	if cookieOff > 0 {
		xmlEnd = cookieOff
	}
	img := &SaveImage{XML: cString(data[:xmlEnd]), WasRunning: running != 0, Format: format,
		StreamOffset: int64(saveHeaderLen) + int64(dataLen)}
	if cookieOff > 0 {
		img.Cookie = cString(data[cookieOff:])
	}
	return img, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// header renders img's header and data (XML, cookie, padding).
func (img *SaveImage) header() []byte {
	xmlLen := len(img.XML) + 1
	data := make([]byte, xmlLen, xmlLen+len(img.Cookie)+1+savePad)
	copy(data, img.XML)
	var cookieOff uint32
	if img.Cookie != "" {
		cookieOff = uint32(xmlLen)
		data = append(data, img.Cookie...)
		data = append(data, 0)
	}
	data = append(data, make([]byte, savePad)...)
	le := binary.LittleEndian
	hdr := make([]byte, 0, saveHeaderLen+len(data))
	hdr = append(hdr, saveMagic...)
	running := uint32(0)
	if img.WasRunning {
		running = 1
	}
	for _, v := range []uint32{saveVersion, uint32(len(data)), running, img.Format, cookieOff} {
		hdr = le.AppendUint32(hdr, v)
	}
	hdr = append(hdr, make([]byte, 4*14)...)
	return append(hdr, data...)
}

// CloneSpec is what a restored guest changes of the saved one's domain.
type CloneSpec struct {
	Name, UUID, Description string
	Disk, Seed, NVRAM       string
	Console                 string
	SSHPort                 int
}

var hostfwdRe = regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:\d+-:22`)

// CloneXML edits a saved guest's domain XML for a clone of it. Only what
// libvirt lets a restore change is changed: names, paths and the SSH
// forward's port; every device stays as saved.
func CloneXML(saved string, s CloneSpec) (string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(saved); err != nil {
		return "", fmt.Errorf("saved domain XML: %w", err)
	}
	d.Name, d.UUID, d.Description = s.Name, s.UUID, s.Description
	if d.Devices == nil || d.OS == nil || d.OS.NVRam == nil || len(d.Devices.Serials) != 1 || d.QEMUCommandline == nil {
		return "", errors.New("saved domain XML is not one labforge made (no NVRAM, serial console or slirp)")
	}
	var disk, seed bool
	for i := range d.Devices.Disks {
		dd := &d.Devices.Disks[i]
		if dd.Source == nil || dd.Source.File == nil {
			continue
		}
		switch dd.Device {
		case "disk":
			dd.Source.File.File, disk = s.Disk, true
			// The saved chain (backing store) is the golden's; libvirt
			// reads the new overlay's own.
			dd.BackingStore = nil
		case "cdrom":
			dd.Source.File.File, seed = s.Seed, true
		}
	}
	if !disk || (s.Seed != "" && !seed) {
		return "", errors.New("saved domain XML has not the disks labforge gives its guests")
	}
	d.OS.NVRam.NVRam = s.NVRAM
	if src := d.Devices.Serials[0].Source; src != nil && src.File != nil {
		src.File.Path = s.Console
	}
	fwd := 0
	for i, a := range d.QEMUCommandline.Args {
		if hostfwdRe.MatchString(a.Value) {
			d.QEMUCommandline.Args[i].Value = hostfwdRe.ReplaceAllString(a.Value, "hostfwd=tcp:127.0.0.1:"+strconv.Itoa(s.SSHPort)+"-:22")
			fwd++
		}
	}
	if fwd != 1 {
		return "", fmt.Errorf("saved domain XML has %d SSH forwards, not one", fwd)
	}
	return d.Marshal()
}

// Save stops the running domain called name, writing its memory state to
// path (owned by root, 0600 once written); the domain stays defined.
func (c *Conn) Save(name, path string) error {
	dom, err := c.DomainLookupByName(name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := c.DomainSaveFlags(dom, path, libvirt.OptString{}, 0); err != nil {
		return fmt.Errorf("save %s: %w", name, err)
	}
	return os.Chmod(path, 0o600)
}

// Restore starts the guest saved at path as the domain xml describes
// (CloneXML), running, and defines it so that it outlives a shutdown.
func (c *Conn) Restore(path, xml string) error {
	if err := c.DomainRestoreFlags(path, libvirt.OptString{xml}, uint32(libvirt.DomainSaveRunning)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := c.DomainDefineXMLFlags(xml, 0); err != nil {
		return fmt.Errorf("define the restored domain: %w", err)
	}
	return nil
}

// ServeSaveClone makes dst a FIFO through which the save file of a clone
// (xml as its domain, then src's memory stream) flows to whoever opens it:
// libvirt reads a save file front to back, so a restore needs no copy of
// the state's memory on disk. It returns at once; done, called once the
// restore is over (whatever its outcome), stops the writer if nobody
// read, waits for it, and removes dst. Its error is the writer's.
func ServeSaveClone(ctx context.Context, src string, img *SaveImage, xml, dst string) (done func() error, err error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	if _, err := in.Seek(img.StreamOffset, io.SeekStart); err != nil {
		in.Close()
		return nil, err
	}
	if err := syscall.Mkfifo(dst, 0o600); err != nil {
		in.Close()
		return nil, fmt.Errorf("restore fifo: %w", err)
	}
	clone := *img
	clone.XML = xml
	stop := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		defer in.Close()
		result <- serve(ctx, stop, dst, clone.header(), in)
	}()
	return func() error {
		close(stop)
		err := <-result
		os.Remove(dst)
		return err
	}, nil
}

// serve waits for a reader of the FIFO at path (until stop), then writes
// header and the rest of in to it, stopping early when ctx ends.
func serve(ctx context.Context, stop <-chan struct{}, path string, header []byte, in io.Reader) error {
	var fd int
	for {
		var err error
		fd, err = syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ENXIO) { // ENXIO: no reader yet
			return fmt.Errorf("restore fifo: %w", err)
		}
		select {
		case <-stop:
			return nil // the restore ended without reading: its error says why
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return err
	}
	out := os.NewFile(uintptr(fd), path)
	defer out.Close()
	if _, err := out.Write(header); err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err // the reader sees the stream end early and fails
		}
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
