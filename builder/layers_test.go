package builder

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labforge/labforge/images"
)

// An image of layers is named by its bytes: a layer rebuilt with other
// bytes under the same key (--force, a step that is not reproducible)
// gives the image another sum, so a warm state made on the old bytes is
// not restored over the new ones.
func TestImageSumFollowsTheLayersBytes(t *testing.T) {
	dir := t.TempDir()
	spec := &images.Spec{Name: "t", Provision: []images.Step{{Name: "one", Run: "true"}}, Course: true}
	plan := planLayers(dir, "basekey", spec, "coursekey")
	if len(plan) != 3 || plan[1].Step != courseStep || plan[2].Step != sealStep {
		t.Fatalf("plan: %+v", plan)
	}
	write := func(content string) {
		for _, l := range plan {
			if err := os.MkdirAll(filepath.Dir(l.Path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(l.Path, []byte(content+l.Key), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := writeLayerMeta(l, "parent", time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("first build ")
	a, err := imageSum("base-sha", plan)
	if err != nil {
		t.Fatal(err)
	}
	write("rebuilt ")
	b, err := imageSum("base-sha", plan)
	if err != nil {
		t.Fatal(err)
	}
	c, err := imageSum("other-base-sha", plan)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || b == c {
		t.Fatalf("the sum did not follow the bytes: %s %s %s", a, b, c)
	}
	// The course's own key is part of the plan: a changed course is a new
	// layer, and the seal on it too.
	other := planLayers(dir, "basekey", spec, "coursekey2")
	if other[0].Key != plan[0].Key || other[1].Key == plan[1].Key || other[2].Key == plan[2].Key {
		t.Fatalf("course key: %+v vs %+v", other, plan)
	}
	os.Remove(plan[0].record())
	if _, err := imageSum("base-sha", plan); err == nil {
		t.Fatal("a layer without its record gave a sum")
	}
}
