// Package images loads image specs (YAML) and knows the catalogue of bases
// they can start from.
package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/labforge/labforge/builder/gobuild"
	"github.com/labforge/labforge/internal/yamlx"
)

// Spec describes one lab host image.
type Spec struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Base        string   `yaml:"base"`
	Packages    []string `yaml:"packages"`
	SELinux     string   `yaml:"selinux"`
	KernelArgs  []string `yaml:"kernelArgs"`
	Disk        Disk     `yaml:"disk"`
	VM          VM       `yaml:"vm"`
	User        string   `yaml:"user"`
	Provision   []Step   `yaml:"provision"`
	// Course puts labforge's course on the image after the steps: the
	// student's `labs` command, its program and the course without its
	// solutions, so that a host or a box made from it has the course.
	Course bool   `yaml:"course"`
	Verify string `yaml:"verify"`
	// Artifacts are programs built on the build host and installed into
	// the root file system before the disk is made.
	Artifacts []Artifact `yaml:"artifacts"`
	// ContainerImages are OCI images built by labforge (no outside
	// registry) and stored in the root file system for the guest to load.
	ContainerImages []ContainerImage `yaml:"containerImages"`
	// AVC lists SELinux denials accepted during provisioning and
	// verification; any other denial fails the build.
	AVC []AcceptedAVC `yaml:"avc"`
	// PolicyModules are SELinux modules added to the distribution's policy:
	// a name is a module of the reference policy's source (container,
	// podman, ...), a path ending in .te a module kept beside the spec.
	PolicyModules []string `yaml:"policyModules"`

	// Path is the file the spec was read from; Dir its directory, against
	// which relative paths in the spec resolve.
	Path string `yaml:"-"`
	Dir  string `yaml:"-"`
	// lines remembers where each field was written, for later errors.
	lines yamlx.Lines
}

// Disk sizes the image's disk.
type Disk struct {
	Size Size `yaml:"size"`
}

// VM sizes the machine the image boots in.
type VM struct {
	Memory Size `yaml:"memory"`
	CPUs   int  `yaml:"cpus"`
}

// Step is one provisioning step, run as root in the booted guest.
type Step struct {
	Name  string   `yaml:"name"`
	Run   string   `yaml:"run"`
	Files []string `yaml:"files"`
	// Network gives the build guest the outside network (and with it the
	// build host's loopback) while this step runs: only for a spec whose
	// author is trusted, and only where a step must download.
	Network bool `yaml:"network"`
}

// NeedsNetwork says whether any step from i on needs the outside network.
func (s *Spec) NeedsNetwork(from int) bool {
	for _, st := range s.Provision[min(from, len(s.Provision)):] {
		if st.Network {
			return true
		}
	}
	return false
}

// Artifact is a set of programs built on the build host: an upstream
// project by recipe and version, or a local main package (go).
type Artifact struct {
	Name    string `yaml:"name"`
	Recipe  string `yaml:"recipe"`
	Version string `yaml:"version"`
	Go      string `yaml:"go"`
	Dest    string `yaml:"dest"`
}

// ContainerImage is one OCI image, built from layers in order.
type ContainerImage struct {
	Name       string       `yaml:"name"`
	From       string       `yaml:"from"`
	Layers     []ImageLayer `yaml:"layers"`
	Entrypoint []string     `yaml:"entrypoint"`
	Cmd        []string     `yaml:"cmd"`
	Env        []string     `yaml:"env"`
	Ports      []int        `yaml:"ports"`
	User       string       `yaml:"user"`
}

// ImageLayer is one layer: exactly one of its sources.
type ImageLayer struct {
	// Busybox is the root fs's /bin/busybox with a link per applet.
	Busybox bool `yaml:"busybox"`
	// Binary is a program of an artifact, put at To (default /usr/local/bin/NAME).
	Binary string `yaml:"binary"`
	// Files is a directory beside the spec, copied to To (default /).
	Files string `yaml:"files"`
	To    string `yaml:"to"`
	// Comment goes into the image's history (what `podman history` shows).
	Comment string `yaml:"comment"`
}

// AcceptedAVC is a denial the image accepts, and why.
type AcceptedAVC struct {
	Match  string `yaml:"match"`
	Reason string `yaml:"reason"`
}

// Size is a byte count written as "8GiB", "512MiB" or a plain integer of bytes.
type Size int64

var sizeRe = regexp.MustCompile(`^([0-9]+)\s*([KMGT]i?B?)?$`)

// UnmarshalYAML parses the human form of a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSize reads "8GiB", "512M" or "1048576".
func ParseSize(str string) (Size, error) {
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(str))
	if m == nil {
		return 0, fmt.Errorf("expected a size like 8GiB or 512MiB, got %q", str)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", str, err)
	}
	shift := map[byte]uint{'K': 10, 'M': 20, 'G': 30, 'T': 40}
	if m[2] != "" {
		sh := shift[m[2][0]]
		if n > (1<<62)>>sh {
			return 0, fmt.Errorf("size %q is too large", str)
		}
		n <<= sh
	}
	return Size(n), nil
}

// MiB is the size in mebibytes, rounded down.
func (s Size) MiB() int64 { return int64(s) >> 20 }

func (s Size) String() string {
	switch {
	case s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	}
	return strconv.FormatInt(int64(s), 10)
}

const (
	defaultDisk   = Size(8 << 30)
	defaultMemory = Size(2 << 30)
	defaultCPUs   = 2
	defaultUser   = "student"
)

// packageRe is a package name as dpkg and rpm allow it, with an optional
// =version (apt) or :arch: nothing a shell would read.
var packageRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._:=~-]*$`)

var stepNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
var userRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// Load reads, validates and fills defaults of the spec at path.
func Load(path string) (*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a spec read from name (used in errors and to resolve
// relative paths).
func Parse(name string, data []byte) (*Spec, error) {
	var s Spec
	lines, err := yamlx.Decode(name, data, &s)
	if err != nil {
		return nil, err
	}
	s.lines = lines
	s.Path = name
	if abs, err := filepath.Abs(name); err == nil {
		s.Dir = filepath.Dir(abs)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Spec) errorf(field, format string, args ...any) error {
	return s.lines.Errorf(s.Path, field, format, args...)
}

// FieldError is an error about field (e.g. "policyModules[1]") that names
// the spec's file and the line the field was written on, for checks made
// outside the loader (what a base's family can build).
func (s *Spec) FieldError(field, format string, args ...any) error {
	return s.errorf(field, format, args...)
}

func (s *Spec) validate() error {
	if s.Name == "" {
		return s.errorf("name", "required")
	}
	if !nameRe.MatchString(s.Name) {
		return s.errorf("name", "%q must be lower-case letters, digits and dashes", s.Name)
	}
	// Its build guest is the instance build-NAME (at most 41 characters).
	if len(s.Name) > 35 {
		return s.errorf("name", "%q is %d characters; at most 35 (its build guest is build-%s)", s.Name, len(s.Name), s.Name)
	}
	if s.Base == "" {
		return s.errorf("base", "required (known: %s)", strings.Join(BaseNames(), ", "))
	}
	if _, ok := LookupBase(s.Base); !ok {
		return s.errorf("base", "unknown base %q (known: %s)", s.Base, strings.Join(BaseNames(), ", "))
	}
	switch s.SELinux {
	case "":
		s.SELinux = "enforcing"
	case "enforcing", "permissive", "disabled":
	default:
		return s.errorf("selinux", "must be enforcing, permissive or disabled, got %q", s.SELinux)
	}
	for i, p := range s.Packages {
		if !packageRe.MatchString(p) {
			return s.errorf(fmt.Sprintf("packages[%d]", i), "invalid package name %q (letters, digits and + - . _ : = only)", p)
		}
	}
	for i, a := range s.KernelArgs {
		if a == "" || strings.IndexFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return s.errorf(fmt.Sprintf("kernelArgs[%d]", i), "%q: one argument, without spaces or control characters", a)
		}
	}
	if s.Disk.Size == 0 {
		s.Disk.Size = defaultDisk
	}
	if s.Disk.Size < 2<<30 {
		return s.errorf("disk.size", "must be at least 2GiB, got %s", s.Disk.Size)
	}
	if s.VM.Memory == 0 {
		s.VM.Memory = defaultMemory
	}
	if s.VM.Memory < 512<<20 {
		return s.errorf("vm.memory", "must be at least 512MiB, got %s", s.VM.Memory)
	}
	if s.VM.CPUs == 0 {
		s.VM.CPUs = defaultCPUs
	}
	if s.VM.CPUs < 1 || s.VM.CPUs > 64 {
		return s.errorf("vm.cpus", "must be between 1 and 64, got %d", s.VM.CPUs)
	}
	if s.User == "" {
		s.User = defaultUser
	}
	if !userRe.MatchString(s.User) || s.User == "root" {
		return s.errorf("user", "invalid user name %q", s.User)
	}
	seen := map[string]int{}
	for i, st := range s.Provision {
		field := fmt.Sprintf("provision[%d]", i)
		if st.Name == "" {
			return s.errorf(field, "name is required")
		}
		// Step names become file names (layer records, the bench's scripts).
		if !stepNameRe.MatchString(st.Name) {
			return s.errorf(field+".name", "%q: letters, digits, dots, dashes and underscores only (at most 64)", st.Name)
		}
		if j, dup := seen[st.Name]; dup {
			return s.errorf(field+".name", "duplicate step name %q (also provision[%d])", st.Name, j)
		}
		seen[st.Name] = i
		if strings.TrimSpace(st.Run) == "" {
			return s.errorf(field+".run", "required")
		}
		for k, f := range st.Files {
			ff := fmt.Sprintf("%s.files[%d]", field, k)
			if _, err := s.resolve(ff, f); err != nil {
				return err
			}
		}
	}
	if s.Verify != "" {
		if _, err := s.resolve("verify", s.Verify); err != nil {
			return err
		}
	}
	if err := s.validateArtifacts(); err != nil {
		return err
	}
	if err := s.validateImages(); err != nil {
		return err
	}
	for i, m := range s.PolicyModules {
		field := fmt.Sprintf("policyModules[%d]", i)
		if strings.HasSuffix(m, ".te") {
			if _, err := s.resolve(field, m); err != nil {
				return err
			}
			// Its .fc and .if go with it, when there are any.
			for _, ext := range []string{".fc", ".if"} {
				sib := strings.TrimSuffix(m, ".te") + ext
				if _, err := os.Lstat(filepath.Join(s.Dir, sib)); err == nil {
					if _, err := s.resolve(field, sib); err != nil {
						return err
					}
				}
			}
			continue
		}
		if !policyNameRe.MatchString(m) {
			return s.errorf(field, "%q is neither a module name nor a .te file", m)
		}
	}
	if len(s.PolicyModules) > 0 && s.SELinux == "disabled" {
		return s.errorf("policyModules", "SELinux is disabled, so no module can be loaded")
	}
	for i, a := range s.AVC {
		field := fmt.Sprintf("avc[%d]", i)
		if strings.TrimSpace(a.Match) == "" {
			return s.errorf(field+".match", "required (a substring of the denial's audit line)")
		}
		if strings.TrimSpace(a.Reason) == "" {
			return s.errorf(field+".reason", "required: say why this denial is accepted")
		}
	}
	return nil
}

var policyNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

var recipeVersionRe = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

func (s *Spec) validateArtifacts() error {
	seen := map[string]int{}
	for i, a := range s.Artifacts {
		field := fmt.Sprintf("artifacts[%d]", i)
		if !nameRe.MatchString(a.Name) {
			return s.errorf(field+".name", "%q must be lower-case letters, digits and dashes", a.Name)
		}
		if j, dup := seen[a.Name]; dup {
			return s.errorf(field+".name", "duplicate artifact %q (also artifacts[%d])", a.Name, j)
		}
		seen[a.Name] = i
		switch {
		case a.Recipe != "" && a.Go != "":
			return s.errorf(field, "give recipe or go, not both")
		case a.Recipe != "":
			if !slices.Contains(gobuild.Recipes(), a.Recipe) {
				return s.errorf(field+".recipe", "unknown recipe %q (known: %s)", a.Recipe, strings.Join(gobuild.Recipes(), ", "))
			}
			if !recipeVersionRe.MatchString(a.Version) {
				return s.errorf(field+".version", "must be a release like v1.34.4, got %q", a.Version)
			}
		case a.Go != "":
			if _, err := s.resolve(field+".go", a.Go); err != nil {
				return err
			}
		default:
			return s.errorf(field, "needs recipe (with version) or go (a main package directory)")
		}
		if a.Dest != "" {
			if err := s.guestPath(field+".dest", "guest", a.Dest); err != nil {
				return err
			}
		}
	}
	return nil
}

var imageNameRe = regexp.MustCompile(`^[a-z0-9]+([._/-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (s *Spec) validateImages() error {
	seen := map[string]int{}
	for i, im := range s.ContainerImages {
		field := fmt.Sprintf("containerImages[%d]", i)
		if !imageNameRe.MatchString(im.Name) {
			return s.errorf(field+".name", "%q must be repository:tag (lower-case repository)", im.Name)
		}
		if j, dup := seen[im.Name]; dup {
			return s.errorf(field+".name", "duplicate image %q (also containerImages[%d])", im.Name, j)
		}
		if im.From != "" {
			if _, ok := seen[im.From]; !ok {
				return s.errorf(field+".from", "%q is not an image listed before this one", im.From)
			}
		}
		seen[im.Name] = i
		if len(im.Layers) == 0 {
			return s.errorf(field+".layers", "at least one layer is required")
		}
		for k, l := range im.Layers {
			lf := fmt.Sprintf("%s.layers[%d]", field, k)
			n := 0
			for _, set := range []bool{l.Busybox, l.Binary != "", l.Files != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				return s.errorf(lf, "give exactly one of busybox, binary, files")
			}
			if l.Binary != "" && !s.hasBinary(l.Binary) {
				return s.errorf(lf+".binary", "%q is not a program of any artifact", l.Binary)
			}
			if l.Files != "" {
				if _, err := s.resolve(lf+".files", l.Files); err != nil {
					return err
				}
			}
			if l.To != "" {
				if err := s.guestPath(lf+".to", "image", l.To); err != nil {
					return err
				}
			}
		}
		for k, p := range im.Ports {
			if p < 1 || p > 65535 {
				return s.errorf(fmt.Sprintf("%s.ports[%d]", field, k), "must be a TCP port, got %d", p)
			}
		}
	}
	return nil
}

// guestPath checks a path inside the guest (or image) that a spec names:
// absolute, with no ".." component and no control character, so that
// joined under the tree being built it cannot name a file of the build host.
func (s *Spec) guestPath(field, where, p string) error {
	if !strings.HasPrefix(p, "/") {
		return s.errorf(field, "must be an absolute path in the %s, got %q", where, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return s.errorf(field, "%q: a path in the %s may not contain \"..\"", p, where)
		}
	}
	if strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return s.errorf(field, "%q: a path in the %s may not contain control characters", p, where)
	}
	return nil
}

func (s *Spec) hasBinary(name string) bool {
	for _, a := range s.Artifacts {
		if a.Go != "" && a.Name == name {
			return true
		}
		// The builder's recipe table is the one source of what each makes.
		if a.Recipe != "" && slices.Contains(gobuild.Targets(a.Recipe), name) {
			return true
		}
	}
	return false
}

// ArtifactDir is the absolute directory of a local (go) artifact.
func (s *Spec) ArtifactDir(a Artifact) string { return filepath.Join(s.Dir, a.Go) }

// ImageFiles is the absolute path of a files layer.
func (s *Spec) ImageFiles(l ImageLayer) string { return filepath.Join(s.Dir, l.Files) }

// resolve turns a path from the spec into an absolute one, refusing paths
// that leave the spec's directory (a spec must not read the user's files),
// by name or through a symbolic link, and inside a directory it names.
func (s *Spec) resolve(field, p string) (string, error) {
	if filepath.IsAbs(p) {
		return "", s.errorf(field, "%q: paths must be relative to the spec's directory", p)
	}
	abs := filepath.Join(s.Dir, p)
	if rel, err := filepath.Rel(s.Dir, abs); err != nil || leaves(rel) {
		return "", s.errorf(field, "%q leaves the spec's directory", p)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", s.errorf(field, "%q: no such file", p)
	}
	top, err := filepath.EvalSymlinks(s.Dir)
	if err != nil {
		return "", s.errorf(field, "spec directory: %v", err)
	}
	inside := func(path string) (string, bool) {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return path, true // a dangling link reads nothing
		}
		rel, err := filepath.Rel(top, real)
		return real, err == nil && !leaves(rel)
	}
	if real, ok := inside(abs); !ok {
		return "", s.errorf(field, "%q is a link that leaves the spec's directory (to %s)", p, real)
	}
	err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		if real, ok := inside(path); !ok {
			rel, _ := filepath.Rel(s.Dir, path)
			return s.errorf(field, "%q is a link that leaves the spec's directory (to %s)", rel, real)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return abs, nil
}

// leaves says whether a relative path climbs out of its base ("..data"
// is a name like any other).
func leaves(rel string) bool {
	return rel == ".." || strings.HasPrefix(rel, "../")
}

// VerifyPath is the absolute path of the spec's verify suite, or "".
func (s *Spec) VerifyPath() string {
	if s.Verify == "" {
		return ""
	}
	return filepath.Join(s.Dir, s.Verify)
}

// StepFiles is the absolute paths of the files step i reads.
func (s *Spec) StepFiles(i int) []string {
	out := make([]string, len(s.Provision[i].Files))
	for k, f := range s.Provision[i].Files {
		out[k] = filepath.Join(s.Dir, f)
	}
	return out
}

// BaseHash identifies everything in the spec that shapes the disk before
// any provisioning step runs, so an unchanged spec reuses its cached disk.
func (s *Spec) BaseHash() string {
	view := struct {
		Name       string
		Base       string
		Packages   []string
		SELinux    string
		KernelArgs []string
		Disk       Disk
		Artifacts  []Artifact       `json:",omitempty"`
		Images     []ContainerImage `json:",omitempty"`
		Files      []string         `json:",omitempty"`
		Policy     []string         `json:",omitempty"`
	}{s.Name, s.Base, s.Packages, s.SELinux, s.KernelArgs, s.Disk, s.Artifacts, s.ContainerImages, nil, nil}
	for _, m := range s.PolicyModules {
		if strings.HasSuffix(m, ".te") {
			stem := filepath.Join(s.Dir, strings.TrimSuffix(m, ".te"))
			m += " " + fileHash(stem+".te") + " " + fileHash(stem+".fc") + " " + fileHash(stem+".if")
		}
		view.Policy = append(view.Policy, m)
	}
	// Files layers count by content; local artifacts by the bytes built
	// from them, which the builder adds to its key.
	for _, im := range s.ContainerImages {
		for _, l := range im.Layers {
			if l.Files != "" {
				view.Files = append(view.Files, l.Files+" "+dirHash(s.ImageFiles(l)))
			}
		}
	}
	b, _ := json.Marshal(view)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// StepHash identifies provisioning step i: its name, its script and the
// content of every file it reads.
func (s *Spec) StepHash(i int) string {
	st := s.Provision[i]
	h := sha256.New()
	fmt.Fprintf(h, "name %q\nrun %q\n", st.Name, st.Run)
	for k, f := range s.StepFiles(i) {
		sum := fileHash(f)
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			sum = dirHash(f)
		}
		fmt.Fprintf(h, "file %q %s\n", st.Files[k], sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Hash identifies the whole image: the base and every step in order.
func (s *Spec) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "base %s\n", s.BaseHash())
	for i := range s.Provision {
		fmt.Fprintf(h, "step %s\n", s.StepHash(i))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dirHash sums the names, modes and contents of every file under dir.
func dirHash(dir string) string {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o", rel, info.Mode())
		switch {
		case info.Mode().IsRegular():
			fmt.Fprintf(h, " %s", fileHash(p))
		case info.Mode()&os.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			fmt.Fprintf(h, " -> %q", t)
		}
		h.Write([]byte("\n"))
		return nil
	})
	if err != nil {
		return "unreadable"
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "missing"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AcceptedDenials are the strings that mark a denial as accepted: the
// spec's own, then its base's (Base.Denials).
func (s *Spec) AcceptedDenials() []string {
	var out []string
	for _, a := range s.AVC {
		out = append(out, a.Match)
	}
	if b, ok := LookupBase(s.Base); ok {
		for _, a := range b.Denials {
			out = append(out, a.Match)
		}
	}
	return out
}
