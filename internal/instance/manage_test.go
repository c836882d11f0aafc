package instance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/verify"
)

// state points the instance records at a fresh directory.
func state(t *testing.T) {
	t.Helper()
	t.Setenv("LABFORGE_STATE", filepath.Join(t.TempDir(), "state"))
}

// record saves an instance record called name, as up leaves it.
func record(t *testing.T, i *Instance) {
	t.Helper()
	i.dir = Dir(i.Name)
	if err := os.MkdirAll(i.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := i.save(); err != nil {
		t.Fatal(err)
	}
}

func TestHeld(t *testing.T) {
	holder := func(n string) string {
		if n == "build-lab" {
			return "the build of lab"
		}
		return ""
	}
	if err := Held("build-lab", holder); err == nil || err.Error() != "build-lab: held by the build of lab" {
		t.Fatalf("a held guest: %v", err)
	}
	if err := Held("lab", holder); err != nil {
		t.Fatalf("a free instance: %v", err)
	}
}

// down refuses a bad or held name before it reaches libvirt.
func TestDownNamesRefuses(t *testing.T) {
	holder := func(n string) string {
		if n == "build-lab" {
			return "the build of lab"
		}
		return ""
	}
	var out bytes.Buffer
	if err := DownNames(context.Background(), &out, []string{"Bad_Name"}, false, holder); err == nil || !strings.Contains(err.Error(), `invalid instance name "Bad_Name"`) {
		t.Fatalf("a bad name: %v", err)
	}
	if err := DownNames(context.Background(), &out, []string{"build-lab"}, false, holder); err == nil || err.Error() != "build-lab: held by the build of lab" {
		t.Fatalf("a held guest: %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q", out.String())
	}
}

func TestListRow(t *testing.T) {
	if got := listRow("gone", "running", "local", nil); got != "gone\trunning (stale: no record)\t-\tlocal\t-\t-\n" {
		t.Errorf("stale: %q", got)
	}
	inst := &Instance{SSHPort: 2222, Accel: "kvm", Image: "/c/lab.qcow2"}
	if got := listRow("lab", "stopped", "hv2", inst); got != "lab\tstopped\t127.0.0.1:2222\thv2\tkvm\t/c/lab.qcow2\n" {
		t.Errorf("record: %q", got)
	}
}

func TestVerifyNeedsASuite(t *testing.T) {
	state(t)
	ctx := context.Background()
	if _, err := Verify(ctx, "nope", VerifyOptions{}); err == nil || !strings.Contains(err.Error(), `no instance "nope"`) {
		t.Fatalf("no instance: %v", err)
	}
	record(t, &Instance{Name: "bare"})
	if _, err := Verify(ctx, "bare", VerifyOptions{}); err == nil || err.Error() != "instance bare has no verify suite; pass --suite FILE" {
		t.Fatalf("no suite: %v", err)
	}
	// The suite is read (here: fails to be) before any connection.
	record(t, &Instance{Name: "lab", Spec: "images/lab.yaml", VerifyOn: "lab.verify.yaml"})
	var asked [2]string
	_, err := Verify(ctx, "lab", VerifyOptions{Load: func(suite, spec string) (*verify.Suite, error) {
		asked = [2]string{suite, spec}
		return nil, os.ErrNotExist
	}})
	if err != os.ErrNotExist || asked != [2]string{"lab.verify.yaml", "images/lab.yaml"} {
		t.Fatalf("%v; asked for %v", err, asked)
	}
}

func TestOpenCourseHost(t *testing.T) {
	state(t)
	if _, err := OpenCourseHost(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `no instance "nope"`) {
		t.Fatalf("no instance: %v", err)
	}
}
