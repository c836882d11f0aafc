package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/labforge/labforge/images"
)

// apply carries out the tree steps of a plan in root, a private copy of
// the root fs; specDir is where copy steps read from.
func apply(ctx context.Context, root, specDir string, steps []step, log io.Writer) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := applyStep(ctx, root, specDir, s, log); err != nil {
			if s.Op == opRequire {
				return err
			}
			if s.Err != "" {
				return fmt.Errorf("%s: %w", s.Err, err)
			}
			return err
		}
	}
	return nil
}

func applyStep(ctx context.Context, root, specDir string, s step, log io.Writer) error {
	in := filepath.Join(root, s.Path)
	switch s.Op {
	case opRun:
		return inChroot(ctx, root, log, s.Args...)
	case opWrite:
		if err := os.MkdirAll(filepath.Dir(in), 0o755); err != nil {
			return err
		}
		return os.WriteFile(in, s.Data, s.Mode)
	case opCopy:
		data, err := os.ReadFile(filepath.Join(specDir, s.Src))
		if err != nil {
			if s.Optional && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return os.WriteFile(in, data, 0o644)
	case opMkdir:
		return os.MkdirAll(in, 0o755)
	case opLink:
		if err := os.MkdirAll(filepath.Dir(in), 0o755); err != nil {
			return err
		}
		_ = os.Remove(in)
		return os.Symlink(s.Src, in)
	case opRemove:
		m, _ := filepath.Glob(in)
		for _, f := range m {
			if err := os.RemoveAll(f); err != nil {
				return err
			}
		}
		return nil
	case opTruncate:
		return filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			return os.Truncate(p, 0)
		})
	case opRequire:
		if _, err := os.Stat(in); err != nil {
			return errors.New(s.Err)
		}
		return nil
	}
	// Host and base steps make the tree; they are not applied inside it.
	return fmt.Errorf("plan step %q cannot run in a tree", s.Op)
}

// customize turns a bootstrapped tree into one that boots from the disk
// labforge makes: the tree steps of the spec's plan.
func customize(ctx context.Context, root string, spec *images.Spec, p *plan, log io.Writer) error {
	return apply(ctx, root, spec.Dir, p.Tree, log)
}
