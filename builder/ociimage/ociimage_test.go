package ociimage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/labforge/labforge/images"
)

// Two builds of the same inputs give the same digests, and a changed file
// gives a new one: the build record's digests mean something.
func TestDigestsRepeat(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "app/usr/share/app/hello.sh"), "#!/bin/sh\necho hi\n", 0o755)
	write(filepath.Join(dir, "bin/tool"), "not really a program", 0o755)
	spec := &images.Spec{Dir: dir, ContainerImages: []images.ContainerImage{
		{Name: "course/a:1", Layers: []images.ImageLayer{{Files: "app"}}, Cmd: []string{"/usr/share/app/hello.sh"}},
		{Name: "course/b:1", From: "course/a:1", Layers: []images.ImageLayer{{Binary: "tool"}}, Ports: []int{8080}},
	}}
	in := Inputs{Spec: spec, Binaries: map[string]string{"tool": filepath.Join(dir, "bin/tool")}}
	build := func() []Built {
		t.Helper()
		out, err := Build(context.Background(), in, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	first, second := build(), build()
	if len(first) != 2 || first[1].Layers != 2 {
		t.Fatalf("built %+v", first)
	}
	for i := range first {
		if first[i].Digest != second[i].Digest {
			t.Fatalf("%s: digests differ: %s vs %s", first[i].Name, first[i].Digest, second[i].Digest)
		}
	}
	write(filepath.Join(dir, "app/usr/share/app/hello.sh"), "#!/bin/sh\necho changed\n", 0o755)
	if third := build(); third[0].Digest == first[0].Digest || third[1].Digest == first[1].Digest {
		t.Fatal("a changed file kept the digests")
	}
	if _, err := Build(context.Background(), Inputs{Spec: spec}, t.TempDir()); err == nil {
		t.Fatal("a missing binary was accepted")
	}
}

func TestSlugAndTag(t *testing.T) {
	if Slug("course/web:1.0") != "course_web_1.0" || Tag("localhost:5000/x:v2") != "v2" {
		t.Fatal(Slug("course/web:1.0"), Tag("localhost:5000/x:v2"))
	}
}
