package builder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/labforge/labforge/builder/gobuild"
	"github.com/labforge/labforge/images"
)

// Programs land inside the tree whatever the destination says and
// whatever links the tree holds: never in a directory of the build host.
func TestInstallStaysInTree(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	set := func(dest string) *artifactSet {
		return &artifactSet{results: []artifactResult{{images.Artifact{Name: "a", Dest: dest},
			&gobuild.Result{Binaries: []gobuild.Binary{{Name: "prog", Path: prog}}}}}}
	}

	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A ".." that got past the spec's check is cleaned at the tree's top.
	if err := set("/../../etc/cron.hourly").install(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/cron.hourly/prog")); err != nil {
		t.Fatalf("not installed inside the tree: %v", err)
	}
	if st, err := os.Stat(filepath.Join(root, "etc/cron.hourly/prog")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed program: %v %v", err, st.Mode())
	}

	// A link in the tree pointing at a host directory is refused.
	outside := filepath.Join(dir, "host-dir")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "usr/local")); err != nil {
		t.Fatal(err)
	}
	if err := set("/usr/local/bin").install(root); err == nil {
		t.Fatal("install followed a link out of the tree")
	}
	if err := os.Symlink("../../../host-dir", filepath.Join(root, "usr/escape")); err != nil {
		t.Fatal(err)
	}
	if err := set("/usr/escape").install(root); err == nil {
		t.Fatal("install followed a relative link out of the tree")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("files written outside the tree: %v", ents)
	}
}
