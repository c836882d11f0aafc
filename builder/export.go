package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/runx"
)

// Exported is what Export wrote.
type Exported struct {
	Image  string // compressed, self-contained qcow2
	SHA256 string
	Record string // the build record beside it
	Bytes  int64
}

// Export writes image (with its whole backing chain) as one compressed
// qcow2 in outDir, with its sha256 and the build record. Each file
// appears whole or not at all.
func Export(ctx context.Context, res *Result, name, outDir string) (ex *Exported, err error) {
	undo, err := mkdirUndo(outDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	out := filepath.Join(outDir, name+".qcow2")
	// A name of its own, so two exports into one directory cannot write
	// into each other's half-made file.
	f, err := os.CreateTemp(outDir, "."+name+".qcow2.tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := runx.Run(ctx, nil, nil, "qemu-img", "convert", "-f", "qcow2", "-c", "-O", "qcow2", res.Image, tmp); err != nil {
		return nil, fmt.Errorf("export %s: %w", name, err)
	}
	sum, err := fsx.SHA256(tmp)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return nil, err
	}
	rec := struct {
		Record
		Exported string `json:"exported"`
		SHA256   string `json:"exportSha256"`
	}{res.Record, filepath.Base(out), sum}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	// The image goes first, its sidecars after, the sha256 last: no
	// sidecar ever describes an image that is not there yet.
	if err := fsx.Sync(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	recPath := filepath.Join(outDir, name+".json")
	if err := fsx.WriteAtomic(recPath, append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	if m, err := os.ReadFile(manifestPath(res.Image)); err == nil {
		if err := fsx.WriteAtomic(filepath.Join(outDir, name+".tree"), m, 0o644); err != nil {
			return nil, err
		}
	}
	if err := fsx.WriteAtomic(out+".sha256", []byte(sum+"  "+filepath.Base(out)+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &Exported{Image: out, SHA256: sum, Record: recPath, Bytes: st.Size()}, nil
}

// mkdirUndo makes dir and its missing parents for an export, and returns
// what removes them again (when still empty) after the export failed, so
// that a failed export leaves no empty dist/ behind.
func mkdirUndo(dir string) (func(), error) {
	var made []string
	for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}, err
	}
	return func() {
		for _, d := range made {
			os.Remove(d) // only when empty
		}
	}, nil
}
