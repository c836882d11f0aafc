package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/labs"
)

// courseVersion changes when the course layer's making changes.
const courseVersion = 1

// courseContent is what a spec's course layer puts on the image (the
// course's program) and the key it gives the layer: the program and every
// file of the course, so that a changed exercise makes a new layer and
// nothing else.
func courseContent() (prog []byte, key string, err error) {
	if prog, err = labs.CourseProgram(); err != nil {
		return nil, "", err
	}
	files, err := labs.GuestFiles()
	if err != nil {
		return nil, "", err
	}
	guest, err := labs.Guest()
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "course %d\nprogram %x\n", courseVersion, sha256.Sum256(prog))
	for _, set := range []map[string][]byte{files, guest} {
		for _, name := range slices.Sorted(maps.Keys(set)) {
			fmt.Fprintf(h, "%s %x\n", name, sha256.Sum256(set[name]))
		}
	}
	return prog, fmt.Sprintf("%x", h.Sum(nil)[:8]), nil
}

// installCourse puts the course on the build guest (labs.InstallInImage).
func (b *build) installCourse(ctx context.Context, c *sshx.Client) (string, error) {
	course, err := labs.Default()
	if err != nil {
		return "", err
	}
	if err := labs.InstallInImage(ctx, instance.RootRunner{Client: c}, course, b.courseProg); err != nil {
		return "", err
	}
	// The program beside labforge may be older than this labforge's
	// course: the image is only right if it reads this course as listed.
	var want bytes.Buffer
	if err := course.WriteList(&want, true); err != nil {
		return "", err
	}
	res, err := c.Run(ctx, labs.GuestBinary+" list --plain")
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || res.Stdout != want.String() {
		first, _, _ := strings.Cut(strings.TrimSpace(res.Stderr+res.Stdout), "\n")
		return "", fmt.Errorf("the course's program on the guest does not list this course (exit %d: %s): rebuild it (scripts/install)", res.ExitCode, first)
	}
	return fmt.Sprintf("%d exercises, labs and %s", len(course.Exercises), labs.GuestBinary), nil
}
