// Package images loads image specs (YAML) and knows the catalogue of bases
// they can start from.
package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

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
	Verify      string   `yaml:"verify"`

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
		n <<= shift[m[2][0]]
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

func (s *Spec) validate() error {
	if s.Name == "" {
		return s.errorf("name", "required")
	}
	if !nameRe.MatchString(s.Name) {
		return s.errorf("name", "%q must be lower-case letters, digits and dashes", s.Name)
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
		if p == "" || strings.ContainsAny(p, " \t,;") {
			return s.errorf(fmt.Sprintf("packages[%d]", i), "invalid package name %q", p)
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
	return nil
}

// resolve turns a path from the spec into an absolute one, refusing paths
// that leave the spec's directory (a spec must not read the user's files).
func (s *Spec) resolve(field, p string) (string, error) {
	if filepath.IsAbs(p) {
		return "", s.errorf(field, "%q: paths must be relative to the spec's directory", p)
	}
	abs := filepath.Join(s.Dir, p)
	if rel, err := filepath.Rel(s.Dir, abs); err != nil || strings.HasPrefix(rel, "..") {
		return "", s.errorf(field, "%q leaves the spec's directory", p)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", s.errorf(field, "%q: no such file", p)
	}
	return abs, nil
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
	}{s.Name, s.Base, s.Packages, s.SELinux, s.KernelArgs, s.Disk}
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
		fmt.Fprintf(h, "file %q %s\n", st.Files[k], fileHash(f))
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

func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "missing"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
