package builder

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/fsx"
)

// sealVersion is bumped when the way the seal runs changes; the script's
// own bytes are part of the seal layer's key as well.
const sealVersion = 6

// stepVersion is bumped when the way a step runs changes: version 2 marks
// every build guest (BuildGuestMarker), so that layers made before it,
// which lack the mark, are not built upon.
const stepVersion = 2

// sealStep names the last layer, which removes what the build left.
const sealStep = "seal"

// layer is one provisioning step's result: a qcow2 overlay on the layer
// before it, like an image layer. Its key chains the parent's key with the
// step's definition and every file it reads, so a rebuild reuses the
// longest unchanged prefix of steps.
type layer struct {
	Step  string
	Index int // step index in the spec, -1 for the seal
	Key   string
	Path  string
}

func (l layer) record() string { return l.Path[:len(l.Path)-len(".qcow2")] + ".json" }

// courseStep names the layer that puts the course on the image (a spec's
// course: true), after the steps and before the seal.
const courseStep = "course"

// Layer indices that are not the spec's steps.
const (
	sealIndex   = -1
	courseIndex = -2
)

// planLayers lists the layers of spec on top of the base disk baseKey;
// courseKey keys the course's layer (the course and its program).
func planLayers(cacheDir, baseKey string, spec *images.Spec, courseKey string) []layer {
	dir := filepath.Join(cacheDir, "layers")
	parent := baseKey
	var out []layer
	add := func(step string, index int, def string) {
		sum := sha256.Sum256([]byte(fmt.Sprintf("parent %s\n%s", parent, def)))
		key := fmt.Sprintf("%x", sum[:8])
		out = append(out, layer{Step: step, Index: index, Key: key, Path: filepath.Join(dir, key+".qcow2")})
		parent = key
	}
	for i, st := range spec.Provision {
		add(st.Name, i, fmt.Sprintf("step %d %s", stepVersion, spec.StepHash(i)))
	}
	if spec.Course {
		add(courseStep, courseIndex, "course "+courseKey)
	}
	add(sealStep, sealIndex, fmt.Sprintf("seal %d %x", sealVersion, sha256.Sum256([]byte(sealScript))))
	return out
}

// layerMeta is written beside a layer once it is complete.
type layerMeta struct {
	Step    string    `json:"step"`
	Key     string    `json:"key"`
	Parent  string    `json:"parent"`
	Took    string    `json:"took"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// firstMissing is the index of the first layer that is not complete.
func firstMissing(plan []layer) int {
	for i, l := range plan {
		if _, err := os.Stat(l.Path); err != nil {
			return i
		}
		if _, err := os.Stat(l.record()); err != nil {
			return i
		}
	}
	return len(plan)
}

func writeLayerMeta(l layer, parent string, took time.Duration) error {
	sum, err := fsx.SHA256(l.Path)
	if err != nil {
		return err
	}
	m := layerMeta{Step: l.Step, Key: l.Key, Parent: parent, Took: took.Round(100 * time.Millisecond).String(), Created: time.Now().UTC(), SHA256: sum}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// The record marks the layer finished: it must never be half there.
	if err := fsx.Sync(l.Path); err != nil {
		return err
	}
	return fsx.WriteAtomic(l.record(), append(data, '\n'), 0o644)
}

// checkLayer verifies a cached layer against its record.
func checkLayer(l layer) error {
	m, err := readLayerMeta(l)
	if err != nil {
		return err
	}
	return checkFile(l.Path, m.SHA256)
}

// imageSum names an image of layers by its bytes: the base disk's sha256
// and each layer's, as recorded when the layer was made.
func imageSum(base string, plan []layer) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "base %s\n", base)
	for _, l := range plan {
		m, err := readLayerMeta(l)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "layer %s %s\n", l.Key, m.SHA256)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func readLayerMeta(l layer) (*layerMeta, error) {
	data, err := os.ReadFile(l.record())
	if err != nil {
		return nil, err
	}
	var m layerMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", l.record(), err)
	}
	return &m, nil
}
