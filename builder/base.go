package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labforge/labforge/images"
)

// cloudBasePath is where a downloaded cloud image is cached, by digest.
func cloudBasePath(cacheDir string, b images.Base) string {
	return filepath.Join(cacheDir, "bases", b.Name+"-"+b.SHA256[:16]+".qcow2")
}

// ensureCloudBase returns the verified cloud image of base b: the one the
// user supplied (baseFile), the cached one, or a fresh download. Every
// path checks the catalogue's sha256, so the same bytes go into every image.
func ensureCloudBase(ctx context.Context, cacheDir string, b images.Base, baseFile string, log io.Writer) (string, error) {
	dst := cloudBasePath(cacheDir, b)
	if baseFile != "" {
		if err := checkFile(baseFile, b.SHA256); err != nil {
			var ce *ChecksumError
			if errors.As(err, &ce) {
				return "", fmt.Errorf("--base-file %s is not the pinned %s image: its sha256 is %s, the catalogue pins %s", baseFile, b.Name, ce.Got, ce.Want)
			}
			return "", fmt.Errorf("--base-file %s: %w", baseFile, err)
		}
		return baseFile, nil
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, checkFile(dst, b.SHA256)
	}
	if log == nil {
		log = io.Discard
	}
	report := func(done, total int64, rate float64) {
		if total > 0 {
			fmt.Fprintf(log, "download %s: %d of %d MiB, %.1f MiB/s\n", b.Name, done>>20, total>>20, rate/(1<<20))
		}
	}
	if err := download(ctx, b.URL, dst, b.SHA256, report); err != nil {
		var ce *ChecksumError
		if errors.As(err, &ce) {
			return "", fmt.Errorf("base %s: the download from %s is not the pinned image (sha256 %s, expected %s)", b.Name, b.URL, ce.Got, ce.Want)
		}
		return "", fmt.Errorf("base %s: download %s: %w; a partial download resumes on the next build, or put the file at %s or pass --base-file", b.Name, b.URL, err, dst)
	}
	return dst, nil
}

// downloadClient fails fast when offline or when a server never answers:
// seconds to connect and for the headers, then the body as long as the
// caller's context allows.
var downloadClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: 20 * time.Second,
}}

// download fetches url to dst, verifying its sha256; dst appears only
// when complete and correct. What an interrupted download fetched stays in
// dst.part and the next call asks only for the rest (HTTP Range). report,
// if set, hears of the progress every few seconds.
func download(ctx context.Context, url, dst, want string, report func(done, total int64, rate float64)) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // what an earlier try fetched
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := downloadClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	total := resp.ContentLength
	switch {
	case have > 0 && resp.StatusCode == http.StatusPartialContent && strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)):
		if total >= 0 {
			total += have
		}
	case resp.StatusCode == http.StatusOK: // no range support: from the start
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h.Reset()
		have = 0
	case have > 0 && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The part is already whole (or longer than the file): the sum decides.
	default:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		w := &progressWriter{done: have, total: total, report: report, start: time.Now(), from: have}
		if _, err := io.Copy(io.MultiWriter(f, h, w), resp.Body); err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", w.done, total, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		os.Remove(tmp) // wrong bytes: the next try starts over
		return &ChecksumError{Path: url, Want: want, Got: got}
	}
	return os.Rename(tmp, dst)
}

// progressWriter counts bytes and reports at most every 2 seconds.
type progressWriter struct {
	done, total, from int64
	start, last       time.Time
	report            func(done, total int64, rate float64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.report != nil && time.Since(p.last) >= 2*time.Second {
		p.last = time.Now()
		p.report(p.done, p.total, float64(p.done-p.from)/time.Since(p.start).Seconds())
	}
	return len(b), nil
}
