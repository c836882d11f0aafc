package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/fsx"
)

// Each bad input stops labforge with one line that says what and where.
func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LABFORGE_STATE", filepath.Join(dir, "state"))
	t.Setenv("LABFORGE_CACHE", filepath.Join(dir, "cache"))
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notAlma := write("not-alma.qcow2", "not a disk image")
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "leak")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "y.te"), []byte("module y 1.0;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "y.fc")); err != nil {
		t.Fatal(err)
	}
	// Disk images that would make qemu-img read host files.
	backed, dataFile := filepath.Join(dir, "backed.qcow2"), filepath.Join(dir, "data-file.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", backed, "1M"},
		{"create", "-q", "-f", "qcow2", "-o", "data_file=" + filepath.Join(dir, "data.raw"), dataFile, "1M"},
	} {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
	}
	badRecord := write("bad-record.json", "{\"os\": ")
	goodRecord := write("record.json", "{}")
	newDist := filepath.Join(dir, "dist")
	// A build of spec "held" runs (its lock is taken): its guest is its own.
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := fsx.Lock(filepath.Join(dir, "cache", ".build-held.lock"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// A port this test holds, for `up --ssh-port`.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	// Should the port check ever move after the build or libvirt, this up
	// fails on the bad base file or the missing socket instead, at once.
	noLibvirt := map[string]string{"LABFORGE_LIBVIRT_SOCKET": filepath.Join(dir, "no.sock")}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown field", nil, []string{"build", write("a.yaml", "name: a\nbase: debian-12\ncolor: red\n")}, "a.yaml:3: color: unknown field"},
		{"wrong type", nil, []string{"build", write("b.yaml", "name: b\nbase: debian-12\nvm:\n  cpus: many\n")}, `b.yaml:4: vm.cpus: expected an integer, got "many"`},
		{"unknown base", nil, []string{"build", write("c.yaml", "name: c\nbase: slackware\n")}, `c.yaml:2: base: unknown base "slackware"`},
		{"bad sha256 of a supplied base", nil, []string{"build", write("d.yaml", "name: d\nbase: alma-9\n"), "--base-file", notAlma}, notAlma + " is not the pinned alma-9 image: its sha256 is "},
		{"step file missing", nil, []string{"build", write("e.yaml", "name: e\nbase: debian-12\nprovision:\n  - name: s\n    run: sh x.sh\n    files: [x.sh]\n")}, `e.yaml:6: provision[0].files[0]: "x.sh": no such file`},
		{"duplicate step names", nil, []string{"build", write("f.yaml", "name: f\nbase: debian-12\nprovision:\n  - name: s\n    run: a\n  - name: s\n    run: b\n")}, `f.yaml:6: provision[1].name: duplicate step name "s"`},
		{"spec reads outside its tree", nil, []string{"build", write("g.yaml", "name: g\nbase: debian-12\nprovision:\n  - name: s\n    run: a\n    files: [../../../etc/shadow]\n")}, `leaves the spec's directory`},
		{"unknown check type", nil, []string{"image", "verify", "--suite", write("h.yaml", "checks:\n  - name: x\n    fiel: /etc\n"), notAlma}, `h.yaml:3: checks[0].fiel: unknown check type or field`},
		{"libvirtd unreachable", map[string]string{"LABFORGE_LIBVIRT_SOCKET": filepath.Join(dir, "no.sock")}, []string{"list"}, "libvirtd not reachable at " + filepath.Join(dir, "no.sock")},
		{"no such instance", nil, []string{"ssh", "-n", "nope", "--", "true"}, `no instance "nope"`},
		{"bad instance name", nil, []string{"down", "Bad_Name"}, `invalid instance name "Bad_Name"`},
		{"SSH port taken", noLibvirt, []string{"up", write("p.yaml", "name: p\nbase: alma-9\n"), "--base-file", notAlma, "-n", "porttest", "--ssh-port", port},
			"ssh port 127.0.0.1:" + port + " is already in use; pick another --ssh-port or leave it out to get a free one"},
		{"artifact dest leaves the tree", nil, []string{"build", write("q.yaml", "name: q\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: etcd\n    version: v3.6.5\n    dest: /../../../etc/cron.hourly\n")}, `q.yaml:7: artifacts[0].dest: "/../../../etc/cron.hourly": a path in the guest may not contain ".."`},
		{"image layer to leaves the tree", nil, []string{"build", write("r.yaml", "name: r\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    layers: [{busybox: true}, {files: not-alma.qcow2, to: /../x}]\n")}, `r.yaml:5: containerImages[0].layers[1].to: "/../x": a path in the image may not contain ".."`},
		{"YAML alias bomb", nil, []string{"build", write("s.yaml", "name: &n s\nbase: debian-12\ndescription: *n\n")}, `s.yaml:3: description: YAML aliases (*n) are not allowed`},
		{"negative prune age", nil, []string{"cache", "prune", "--older-than", "-1h"}, "--older-than -1h0m0s: must not be negative"},
		{"start a missing instance", noLibvirt, []string{"start", "nope"}, `no instance "nope"`},
		{"stop a bad name", noLibvirt, []string{"stop", "../etc"}, `invalid instance name "../etc"`},
		{"negative boot timeout", noLibvirt, []string{"up", "--boot-timeout", "-1s"}, "--boot-timeout -1s: must be more than zero"},
		{"zero parallel", noLibvirt, []string{"class", "create", "c", "--students", "2", "--parallel", "0"}, "--parallel 0: must be at least 1"},
		{"unwritable junit", noLibvirt, []string{"up", "--junit", filepath.Join(dir, "no", "such", "dir", "up.xml")}, "--junit " + filepath.Join(dir, "no", "such", "dir", "up.xml") + ": cannot write into"},
		{"unknown completion shell", nil, []string{"completion", "nope"}, `invalid argument "nope" for "labforge completion"`},
		{"class name too long for its students", noLibvirt, []string{"class", "create", "c234567890123456789012345678901234567890", "--students", "2"}, "is too long: its students' hosts"},
		{"a build guest's name", noLibvirt, []string{"up", write("b2.yaml", "name: b2\nbase: debian-12\n"), "-n", "build-container-internals"}, `names starting with "build-" are labforge's build guests`},
		{"size that overflows", nil, []string{"build", write("t.yaml", "name: t\nbase: debian-12\ndisk:\n  size: 16777216TiB\n")}, `t.yaml:4: disk.size: size "16777216TiB" is too large`},
		{"kernel argument with a newline", nil, []string{"build", write("u.yaml", "name: u\nbase: debian-12\nkernelArgs: [\"quiet\\ninitrd /x\"]\n")}, `u.yaml:3: kernelArgs[0]:`},
		{"package name a shell would run", nil, []string{"build", write("v.yaml", "name: v\nbase: debian-12\npackages: [\"vim$(id)\"]\n")}, `v.yaml:3: packages[0]: invalid package name "vim$(id)"`},
		{"spec name too long for its build guest", nil, []string{"build", write("w.yaml", "name: w234567890123456789012345678901234567\nbase: debian-12\n")}, `w.yaml:1: name: "w234567890123456789012345678901234567" is 37 characters; at most 35`},
		{"step file is a link out of the spec's directory", nil, []string{"build", write("x.yaml", "name: x\nbase: debian-12\nprovision:\n  - name: s\n    run: cat leak\n    files: [leak]\n")}, `x.yaml:6: provision[0].files[0]: "leak" is a link that leaves the spec's directory (to /etc/shadow)`},
		{"step name that is a path", nil, []string{"build", write("y.yaml", "name: y\nbase: debian-12\nprovision:\n  - name: ../../y\n    run: true\n")}, `y.yaml:4: provision[0].name: "../../y": letters, digits`},
		{"hypervisor URI that injects ssh_config", noLibvirt, []string{"class", "create", "c", "--students", "1", "--hosts", "qemu+ssh://h/system?keyfile=/k%0AProxyCommand%20sh"}, "keyfile may not hold spaces or control characters"},
		{"zero boot timeout", noLibvirt, []string{"up", "--boot-timeout", "0"}, "--boot-timeout 0s: must be more than zero"},
		{"negative parallel", noLibvirt, []string{"class", "create", "c", "--students", "2", "--parallel", "-1"}, "--parallel -1: must be at least 1"},
		{"verify suite is a link out of the spec's directory", nil, []string{"build", write("z.yaml", "name: z\nbase: debian-12\nverify: leak\n")}, `z.yaml:3: verify: "leak" is a link that leaves the spec's directory (to /etc/shadow)`},
		{"policy file context is a link out", nil, []string{"build", write("fc.yaml", "name: fc\nbase: debian-12\npolicyModules: [y.te]\n")}, `fc.yaml:3: policyModules[0]: "y.fc" is a link that leaves the spec's directory (to /etc/passwd)`},
		{"image verify of a qcow2 backed by a host file", nil, []string{"image", "verify", backed}, backed + ": backed by /etc/shadow, outside labforge's cache"},
		{"box export of a qcow2 backed by a host file", nil, []string{"box", "export", backed, "-o", filepath.Join(newDist, "b.box")}, backed + ": backed by /etc/shadow, outside labforge's cache"},
		{"box export of a qcow2 with an external data file", nil, []string{"box", "export", dataFile, "-o", filepath.Join(newDist, "d.box")}, dataFile + ": its data lives in another file"},
		{"image diff of an unreadable record", nil, []string{"image", "diff", badRecord, goodRecord}, badRecord + ": "},
		{"a class its students would share build guests' names with", noLibvirt, []string{"class", "create", "build", "--students", "1"}, `class name "build": names starting with "build-" are labforge's build guests`},
		{"down of a running build's guest", noLibvirt, []string{"down", "build-held"}, "build-held: held by the build of held that runs it"},
		{"stop of a running build's guest", noLibvirt, []string{"stop", "build-held"}, "build-held: held by the build of held that runs it"},
		{"missing spec", nil, []string{"build", filepath.Join(dir, "none.yaml")}, "none.yaml: no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, err := run(t, c.args...)
			if err == nil {
				t.Fatalf("labforge %v succeeded", c.args)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not contain %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			// Nothing left behind: no instance, no work or temporary file.
			pats := []string{"state/instances/*/*", "cache/images/*", "cache/layers/*", "cache/warm/*", "dist"}
			for _, g := range builder.LeftoverGlobs {
				pats = append(pats, "cache/"+g)
			}
			for _, pat := range pats {
				if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
					t.Fatalf("left behind: %v", m)
				}
			}
		})
	}
}
