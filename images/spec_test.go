package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedSpecsLoad(t *testing.T) {
	s, err := Load("debian-base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Base != "debian-12" || s.SELinux != "enforcing" || s.User != "student" {
		t.Fatalf("unexpected spec: %+v", s)
	}
	if s.Disk.Size != 8<<30 || s.VM.Memory != 2<<30 || s.VM.CPUs != 2 {
		t.Fatalf("sizes: %+v %+v", s.Disk, s.VM)
	}
	if filepath.Base(s.VerifyPath()) != "debian-base.verify.yaml" {
		t.Fatalf("verify path %q", s.VerifyPath())
	}
	lab, err := Load("container-internals.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(lab.Artifacts) == 0 || len(lab.ContainerImages) < 5 || len(lab.PolicyModules) == 0 {
		t.Fatalf("lab host lost its parts: %d artifacts, %d images, %d modules", len(lab.Artifacts), len(lab.ContainerImages), len(lab.PolicyModules))
	}
	if lab.BaseHash() == s.BaseHash() {
		t.Fatal("different specs, same base hash")
	}
}

// Each bad spec gets a one-line error naming file:line and the field.
func TestBadSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "step.sh"), []byte("true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links that leave the directory, by name and inside a directory.
	os.MkdirAll(filepath.Join(dir, "files", "etc"), 0o755)
	os.Symlink("/etc/shadow", filepath.Join(dir, "leak"))
	os.Symlink("/etc", filepath.Join(dir, "files", "etc", "host"))
	os.WriteFile(filepath.Join(dir, "y.te"), []byte("policy_module(x, 1.0)\n"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "y.fc"))
	cases := []struct{ name, doc, want string }{
		{"step file is a link out", "name: x\nbase: debian-12\nprovision:\n  - name: a\n    run: true\n    files: [leak]\n", `bad.yaml:6: provision[0].files[0]: "leak" is a link that leaves the spec's directory (to /etc/shadow)`},
		{"link inside a files directory", "name: x\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    layers: [{files: files}]\n", `containerImages[0].layers[0].files: "files/etc/host" is a link that leaves the spec's directory (to /etc)`},
		{"policy .fc is a link out", "name: x\nbase: debian-12\npolicyModules: [y.te]\n", `policyModules[0]: "y.fc" is a link that leaves the spec's directory (to /etc/passwd)`},
		{"verify is a link out", "name: x\nbase: debian-12\nverify: leak\n", `verify: "leak" is a link that leaves the spec's directory`},
		{"unknown field", "name: x\nbase: debian-12\ncolour: red\n", "bad.yaml:3: colour: unknown field"},
		{"wrong type", "name: x\nbase: debian-12\nvm:\n  cpus: two\n", `bad.yaml:4: vm.cpus: expected an integer, got "two"`},
		{"unknown base", "name: x\nbase: ubuntu-99\n", `bad.yaml:2: base: unknown base "ubuntu-99" (known: alma-9, centos-stream-9, debian-12, rocky-9)`},
		{"bad size", "name: x\nbase: debian-12\ndisk:\n  size: huge\n", `bad.yaml:4: disk.size: expected a size like 8GiB`},
		{"small disk", "name: x\nbase: debian-12\ndisk:\n  size: 1GiB\n", `bad.yaml:4: disk.size: must be at least 2GiB`},
		{"bad selinux", "name: x\nbase: debian-12\nselinux: sometimes\n", `bad.yaml:3: selinux: must be enforcing`},
		{"missing name", "base: debian-12\n", `bad.yaml: name: required`},
		{"bad name", "name: Big Name\nbase: debian-12\n", `bad.yaml:1: name: "Big Name" must be lower-case`},
		{"packages not a list", "name: x\nbase: debian-12\npackages: vim\n", `bad.yaml:3: packages: expected a list, got "vim"`},
		{"duplicate steps", "name: x\nbase: debian-12\nprovision:\n  - name: a\n    run: true\n  - name: a\n    run: true\n", `bad.yaml:6: provision[1].name: duplicate step name "a"`},
		{"missing step file", "name: x\nbase: debian-12\nprovision:\n  - name: a\n    run: true\n    files: [nope.sh]\n", `bad.yaml:6: provision[0].files[0]: "nope.sh": no such file`},
		{"step file outside", "name: x\nbase: debian-12\nprovision:\n  - name: a\n    run: true\n    files: [../../etc/passwd]\n", `provision[0].files[0]: "../../etc/passwd" leaves the spec's directory`},
		{"missing verify", "name: x\nbase: debian-12\nverify: none.yaml\n", `bad.yaml:3: verify: "none.yaml": no such file`},
		{"unknown recipe", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: k3s\n    version: v1.0.0\n", `bad.yaml:5: artifacts[0].recipe: unknown recipe "k3s"`},
		{"bad version", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: kubernetes\n    version: latest\n", `bad.yaml:6: artifacts[0].version: must be a release like v1.34.4`},
		{"artifact without source", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n", `bad.yaml:4: artifacts[0]: needs recipe`},
		{"image bad name", "name: x\nbase: debian-12\ncontainerImages:\n  - name: Web\n    layers: [{busybox: true}]\n", `bad.yaml:4: containerImages[0].name: "Web" must be repository:tag`},
		{"image unknown from", "name: x\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    from: b:1\n    layers: [{busybox: true}]\n", `bad.yaml:5: containerImages[0].from: "b:1" is not an image listed before`},
		{"image unknown binary", "name: x\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    layers: [{binary: nope}]\n", `containerImages[0].layers[0].binary: "nope" is not a program of any artifact`},
		{"image two sources", "name: x\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    layers: [{busybox: true, files: step.sh}]\n", `containerImages[0].layers[0]: give exactly one of busybox, binary, files`},
		{"avc without reason", "name: x\nbase: debian-12\navc:\n  - match: comm=\"x\"\n", `bad.yaml:4: avc[0].reason: required`},
		{"bad policy module", "name: x\nbase: debian-12\npolicyModules: [Bad-Name]\n", `bad.yaml:3: policyModules[0]: "Bad-Name" is neither`},
		{"artifact dest leaves the tree", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: etcd\n    version: v3.6.5\n    dest: /../../../etc/cron.hourly\n", `bad.yaml:7: artifacts[0].dest: "/../../../etc/cron.hourly": a path in the guest may not contain ".."`},
		{"artifact dest inner dots", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: etcd\n    version: v3.6.5\n    dest: /usr/local/../../../../root\n", `artifacts[0].dest: "/usr/local/../../../../root": a path in the guest may not contain ".."`},
		{"artifact dest newline", "name: x\nbase: debian-12\nartifacts:\n  - name: k\n    recipe: etcd\n    version: v3.6.5\n    dest: \"/usr/bin\\n/etc\"\n", `artifacts[0].dest: "/usr/bin\n/etc": a path in the guest may not contain control characters`},
		{"image layer to leaves the tree", "name: x\nbase: debian-12\ncontainerImages:\n  - name: a:1\n    layers: [{files: step.sh, to: /../../etc}]\n", `containerImages[0].layers[0].to: "/../../etc": a path in the image may not contain ".."`},
		{"size overflows", "name: x\nbase: debian-12\ndisk:\n  size: 16777216TiB\n", `bad.yaml:4: disk.size: size "16777216TiB" is too large`},
		{"kernel arg with a newline", "name: x\nbase: debian-12\nkernelArgs: [\"quiet\\ninitrd /evil\"]\n", `bad.yaml:3: kernelArgs[0]: "quiet\ninitrd /evil": one argument`},
		{"package name with a command", "name: x\nbase: debian-12\npackages: [\"vim$(id)\"]\n", `bad.yaml:3: packages[0]: invalid package name "vim$(id)"`},
		{"spec name too long for its build guest", "name: a234567890123456789012345678901234567\nbase: debian-12\n", `bad.yaml:1: name: "a234567890123456789012345678901234567" is 37 characters; at most 35`},
		{"step name with a path", "name: x\nbase: debian-12\nprovision:\n  - name: ../../x\n    run: true\n", `bad.yaml:4: provision[0].name: "../../x": letters, digits`},
		{"missing te", "name: x\nbase: debian-12\npolicyModules: [x.te]\n", `policyModules[0]: "x.te": no such file`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(path, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("no error for %q", c.doc)
			}
			msg := strings.TrimPrefix(err.Error(), dir+"/")
			if !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not contain %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
		})
	}
}

func TestHashFollowsContent(t *testing.T) {
	dir := t.TempDir()
	step := filepath.Join(dir, "step.sh")
	write := func(s string) {
		if err := os.WriteFile(step, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("echo one\n")
	doc := "name: x\nbase: debian-12\ndescription: a\nprovision:\n  - name: a\n    run: sh step.sh\n    files: [step.sh]\n"
	spec := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Load(spec)
	if err != nil {
		t.Fatal(err)
	}
	hashA := a.Hash()
	write("echo two\n")
	b, _ := Load(spec)
	if hashA == b.Hash() {
		t.Fatal("changing a file a step reads must change the hash")
	}
	// The description and VM size do not shape the disk.
	if err := os.WriteFile(spec, []byte(strings.Replace(doc, "description: a", "description: b\nvm:\n  cpus: 4", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := Load(spec)
	if c.Hash() != b.Hash() {
		t.Fatal("description or vm changed the image hash")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"8GiB": 8 << 30, "512MiB": 512 << 20, "512M": 512 << 20, "1048576": 1 << 20, "2G": 2 << 30} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "8 PB", "-1"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): want an error", in)
		}
	}
}

func TestCatalogue(t *testing.T) {
	for _, n := range BaseNames() {
		b, _ := LookupBase(n)
		switch b.Kind {
		case FromPackages:
			if b.Suite == "" {
				t.Errorf("%s: no suite", b.Name)
			}
		case CloudImage:
			if !strings.HasPrefix(b.URL, "https://") || len(b.SHA256) != 64 {
				t.Errorf("%s: URL %q or sha256 %q not pinned", b.Name, b.URL, b.SHA256)
			}
		}
		if b.Family != "debian" && b.Family != "el9" {
			t.Errorf("%s: unknown family %q", b.Name, b.Family)
		}
	}
}

// A debian-12 spec accepts its base's boot-time denials after its own,
// and every one the catalogue lists says why.
func TestBaseDenialsAccepted(t *testing.T) {
	s := &Spec{Base: "debian-12", AVC: []AcceptedAVC{{Match: "mine", Reason: "test"}}}
	got := s.AcceptedDenials()
	if len(got) != 1+len(debian12Denials) || got[0] != "mine" {
		t.Fatalf("accepted denials: %q", got)
	}
	for _, b := range catalogue {
		for _, d := range b.Denials {
			if d.Match == "" || d.Reason == "" {
				t.Errorf("%s: denial %+v needs a match and a reason", b.Name, d)
			}
		}
	}
}

// A name that starts with two dots is a name, not a way out.
func TestDotDotNameStaysInside(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "..data"), []byte("true\n"), 0o644)
	p := filepath.Join(dir, "s.yaml")
	os.WriteFile(p, []byte("name: x\nbase: debian-12\nprovision:\n  - name: a\n    run: sh ..data\n    files: [..data]\n"), 0o644)
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}
