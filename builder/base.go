package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
func ensureCloudBase(ctx context.Context, cacheDir string, b images.Base, baseFile string) (string, error) {
	dst := cloudBasePath(cacheDir, b)
	if baseFile != "" {
		if err := checkFile(baseFile, b.SHA256); err != nil {
			return "", fmt.Errorf("--base-file %s is not %s: %w", baseFile, b.Name, err)
		}
		return baseFile, nil
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, checkFile(dst, b.SHA256)
	}
	if err := download(ctx, b.URL, dst, b.SHA256); err != nil {
		return "", fmt.Errorf("base not reachable: %s; put the file at %s or pass --base-file (%v)", b.URL, dst, err)
	}
	return dst, nil
}

// download fetches url to dst, verifying its sha256 on the way; dst
// appears only when complete and correct.
func download(ctx context.Context, url, dst, want string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// Fail fast when offline: the connection gets seconds, the body as
	// long as the context allows.
	client := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
	}}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	req, err := http.NewRequestWithContext(dctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return err
	}
	resp, err := client.Do(req)
	cancel()
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &ChecksumError{Path: url, Want: want, Got: got}
	}
	return os.Rename(tmp, dst)
}
