// Package verify runs host checks, loaded from a YAML suite, against a
// guest over one connection and reports the results as a table, JSON or
// JUnit XML.
//
// A suite looks like this; a check's type is the one type key it has:
//
//	name: container-internals host
//	defaults: {timeout: 30s, interval: 2s}
//	checks:
//	  - name: selinux enforcing
//	    command: getenforce        # exit (default 0), stdout regexp
//	    stdout: ^Enforcing$
//	    hint: run setenforce 1
//	  - name: sshd config
//	    file: /etc/ssh/sshd_config # exists (default true), mode, owner,
//	    mode: "0644"               # group, selinux, contains regexp
//	  - {name: sshd running, service: ssh, enabled: true}  # active (default true)
//	  - {name: openssh, package: openssh-server, version: "^1:9"}
//	  - {name: forwarding, sysctl: net.ipv4.ip_forward, value: "1"}
//	  - {name: ssh listening, port: 22}                    # proto: tcp|udp
//
// Each check is tried every interval until it passes or its timeout
// elapses; "retries: N" (per check or in defaults) stops it after N+1
// attempts instead. Regexps are Go syntax, multi-line (^ and $ match at
// line ends).
package verify

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/labforge/labforge/internal/yamlx"
)

// Suite is a named list of checks.
type Suite struct {
	Name     string   `yaml:"name"`
	Defaults Defaults `yaml:"defaults"`
	Checks   []Check  `yaml:"checks"`
}

// Defaults apply to every check that does not set its own value.
type Defaults struct {
	Timeout  Duration `yaml:"timeout"`
	Interval Duration `yaml:"interval"`
	Retries  *int     `yaml:"retries"`
}

// Built-in defaults, used when neither the check nor the suite sets one.
// A check is retried until the timeout so that checks run right after boot
// can wait for services that are still starting.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultInterval = 2 * time.Second
)

// CheckType names the kind of a check; it is implied by which of the type
// keys (command, file, service, package, sysctl, port) a check has.
type CheckType string

const (
	TypeCommand CheckType = "command"
	TypeFile    CheckType = "file"
	TypeService CheckType = "service"
	TypePackage CheckType = "package"
	TypeSysctl  CheckType = "sysctl"
	TypePort    CheckType = "port"
)

var checkTypes = []CheckType{TypeCommand, TypeFile, TypeService, TypePackage, TypeSysctl, TypePort}

// Check is one assertion about the host. Only the fields of its Type are
// used; the YAML loader rejects the others.
type Check struct {
	Name string    `yaml:"name"`
	Type CheckType `yaml:"-"` // set by Parse from the type key present
	Hint string    `yaml:"hint"`
	// Pointer is a first, gentler hint: where to look, not what to do. A
	// course shows it before Hint; verify's own reports ignore it.
	Pointer string `yaml:"pointer"`

	// Timeout bounds all attempts together; attempts repeat every Interval
	// until one passes. Retries, when set, caps the repeats (0: one attempt).
	Timeout  Duration `yaml:"timeout"`
	Interval Duration `yaml:"interval"`
	Retries  *int     `yaml:"retries"`
	// Concurrent lets the check run while the checks after it run (in a
	// batch, as a background job in the host): for slow checks that
	// neither depend on nor disturb the others, such as one that starts
	// a container. Its result comes when the round ends.
	Concurrent bool `yaml:"concurrent"`
	// Barrier makes the check wait for every concurrent check before it
	// (the denial gate must see what they did). Set in Go, not in YAML.
	Barrier bool `yaml:"-"`
	// Secret keeps what the check wants out of its failure message: a
	// course's check must not hand out the answer it compares with. Set in
	// Go, not in YAML.
	Secret bool `yaml:"-"`

	// command: exit status and an optional stdout match.
	Command string  `yaml:"command"`
	Stdout  *Regexp `yaml:"stdout"`
	Exit    *int    `yaml:"exit"` // default 0

	// file: existence, metadata and an optional content match.
	File     string    `yaml:"file"`
	Exists   *bool     `yaml:"exists"` // default true
	Mode     *FileMode `yaml:"mode"`
	Owner    string    `yaml:"owner"` // name or numeric id
	Group    string    `yaml:"group"` // name or numeric id
	SELinux  string    `yaml:"selinux"`
	Contains *Regexp   `yaml:"contains"`

	// service: systemd unit state.
	Service string `yaml:"service"`
	Active  *bool  `yaml:"active"` // default true
	Enabled *bool  `yaml:"enabled"`

	// package: installed, with an optional version match.
	Package string  `yaml:"package"`
	Version *Regexp `yaml:"version"`

	// sysctl: exists, and equals Value when set (whitespace-insensitive).
	Sysctl string  `yaml:"sysctl"`
	Value  *string `yaml:"value"`

	// port: something listens on it.
	Port  int    `yaml:"port"`
	Proto string `yaml:"proto"` // tcp (default) or udp
}

// typeFields lists the keys that belong to one check type only, so that a
// key given to the wrong type is reported rather than silently ignored.
var typeFields = map[string]CheckType{
	"stdout": TypeCommand, "exit": TypeCommand,
	"exists": TypeFile, "mode": TypeFile, "owner": TypeFile, "group": TypeFile,
	"selinux": TypeFile, "contains": TypeFile,
	"active": TypeService, "enabled": TypeService,
	"version": TypePackage,
	"value":   TypeSysctl,
	"proto":   TypePort,
}

// Load reads and validates the suite in the YAML file at path.
func Load(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates a suite from data; name is used in errors
// (as the file) and as the suite name when the YAML has none.
func Parse(name string, data []byte) (*Suite, error) {
	var s Suite
	lines, err := yamlx.Decode(name, data, &s)
	if err != nil {
		return nil, explainUnknownKey(err)
	}
	if err := s.validate(name, lines); err != nil {
		return nil, err
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	return &s, nil
}

// Validate checks a suite that was decoded with yamlx.Decode from file as
// part of a larger document: one that carries a suite's defaults and checks
// at its top level (a course exercise), so that its checks get the same
// validation and the same file:line: field errors as a suite file's.
func (s *Suite) Validate(file string, lines yamlx.Lines) error { return s.validate(file, lines) }

// ExplainDecodeError rewords yamlx's unknown-field error inside a check the
// way Parse does; other errors are returned as they are.
func ExplainDecodeError(err error) error { return explainUnknownKey(err) }

func (s *Suite) validate(file string, lines yamlx.Lines) error {
	if len(s.Checks) == 0 {
		return lines.Errorf(file, "checks", "at least one check is required")
	}
	if err := checkRetries(file, lines, "defaults.retries", s.Defaults.Retries); err != nil {
		return err
	}
	seen := map[string]string{} // check name -> path of its first use
	for i := range s.Checks {
		c := &s.Checks[i]
		path := fmt.Sprintf("checks[%d]", i)
		at := func(field, format string, args ...any) error {
			if _, ok := lines[path+"."+field]; !ok {
				// Missing field: point at the check itself.
				return &yamlx.Error{File: file, Line: lines[path], Field: path + "." + field, Msg: fmt.Sprintf(format, args...)}
			}
			return lines.Errorf(file, path+"."+field, format, args...)
		}

		if c.Name = strings.TrimSpace(c.Name); c.Name == "" {
			return at("name", "required")
		}
		if first, dup := seen[c.Name]; dup {
			return at("name", "duplicate check name %q (first at line %d)", c.Name, lines[first])
		}
		seen[c.Name] = path + ".name"

		var keys []string
		for _, t := range checkTypes {
			if _, ok := lines[path+"."+string(t)]; ok {
				keys = append(keys, string(t))
			}
		}
		switch len(keys) {
		case 0:
			return &yamlx.Error{File: file, Line: lines[path], Field: path,
				Msg: fmt.Sprintf("check %q has no type: give one of %s", c.Name, typeList())}
		case 1:
			c.Type = CheckType(keys[0])
		default:
			slices.SortFunc(keys, func(a, b string) int { return lines[path+"."+a] - lines[path+"."+b] })
			return at(keys[1], "a check has exactly one type, but %q has both %s and %s", c.Name, keys[0], keys[1])
		}
		// Report a misplaced key at the earliest line, so the error is stable.
		var wrong string
		for f, t := range typeFields {
			if _, ok := lines[path+"."+f]; ok && t != c.Type && (wrong == "" || lines[path+"."+f] < lines[path+"."+wrong]) {
				wrong = f
			}
		}
		if wrong != "" {
			return at(wrong, "not a field of a %s check (it belongs to %s checks)", c.Type, typeFields[wrong])
		}
		if err := checkRetries(file, lines, path+".retries", c.Retries); err != nil {
			return err
		}
		if err := c.validateFields(); err != nil {
			return at(err.field, "%s", err.msg)
		}
	}
	return nil
}

var unknownCheckKey = regexp.MustCompile(`^checks\[\d+\]\.([^.\[]+)$`)

// explainUnknownKey rewords an unknown key in a check: since the type is
// implied by a key, a misspelt type ("fil") lands here too, and the error
// should say what the type keys are.
func explainUnknownKey(err error) error {
	var e *yamlx.Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Msg, "unknown field") {
		return err
	}
	m := unknownCheckKey.FindStringSubmatch(e.Field)
	if m == nil {
		return err
	}
	own := slices.Sorted(maps.Keys(typeFields))
	fields := append([]string{"name", "hint", "timeout", "interval", "retries"}, own...)
	return &yamlx.Error{File: e.File, Line: e.Line, Field: e.Field,
		Msg: fmt.Sprintf("unknown check type or field %q (types: %s; fields: %s)", m[1], typeList(), strings.Join(fields, ", "))}
}

func checkRetries(file string, lines yamlx.Lines, path string, n *int) error {
	if n != nil && *n < 0 {
		return lines.Errorf(file, path, "must not be negative")
	}
	return nil
}

type fieldError struct{ field, msg string }

// validateFields checks the values of c's own type; it is also what keeps
// the probe builders in checks.go from failing on a parsed suite.
func (c *Check) validateFields() *fieldError {
	bad := func(field, format string, args ...any) *fieldError {
		return &fieldError{field, fmt.Sprintf(format, args...)}
	}
	switch c.Type {
	case TypeCommand:
		if strings.TrimSpace(c.Command) == "" {
			return bad("command", "must not be empty")
		}
	case TypeFile:
		if !strings.HasPrefix(c.File, "/") {
			return bad("file", "must be an absolute path, got %q", c.File)
		}
		if c.Exists != nil && !*c.Exists {
			set := []struct {
				field string
				set   bool
			}{{"mode", c.Mode != nil}, {"owner", c.Owner != ""}, {"group", c.Group != ""}, {"selinux", c.SELinux != ""}, {"contains", c.Contains != nil}}
			for _, f := range set {
				if f.set {
					return bad(f.field, "cannot be checked with exists: false")
				}
			}
		}
		if c.SELinux != "" {
			if _, err := selinuxPattern(c.SELinux); err != nil {
				return bad("selinux", "%v", err)
			}
		}
	case TypeService:
		if !unitName.MatchString(c.Service) {
			return bad("service", "invalid unit name %q", c.Service)
		}
	case TypePackage:
		if !packageName.MatchString(c.Package) {
			return bad("package", "invalid package name %q", c.Package)
		}
	case TypeSysctl:
		if !sysctlName.MatchString(c.Sysctl) {
			return bad("sysctl", "invalid sysctl key %q", c.Sysctl)
		}
	case TypePort:
		if c.Port < 1 || c.Port > 65535 {
			return bad("port", "must be between 1 and 65535, got %d", c.Port)
		}
		if c.Proto != "" && c.Proto != "tcp" && c.Proto != "udp" {
			return bad("proto", "must be tcp or udp, got %q", c.Proto)
		}
	default:
		return bad("type", "unknown check type %q (known: %s)", c.Type, typeList())
	}
	return nil
}

// Names are restricted to what the tools accept anyway; starting with an
// alphanumeric keeps a name from being read as an option.
var (
	unitName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:_.@\\-]*$`)
	packageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._:~-]*$`)
	sysctlName  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)
)

func typeList() string {
	s := make([]string, len(checkTypes))
	for i, t := range checkTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// Duration is a time.Duration written as a Go duration string ("30s", "2m").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 30s, 2m)", n.Value)
	}
	if v <= 0 {
		return fmt.Errorf("duration must be positive, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Regexp is a regular expression compiled at load time. Matching is
// multi-line, so ^ and $ anchor at line boundaries as they do in grep.
type Regexp struct {
	*regexp.Regexp
	src string
}

// MustRegexp compiles src like the YAML loader does; it panics on error.
func MustRegexp(src string) *Regexp {
	return &Regexp{regexp.MustCompile("(?m)" + src), src}
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Regexp) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a regular expression")
	}
	// Compile without the flag first so that errors quote what was written.
	if _, err := regexp.Compile(n.Value); err != nil {
		return fmt.Errorf("invalid regular expression %q: %v", n.Value, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	*r = *MustRegexp(n.Value)
	return nil
}

// String returns the expression as written.
func (r *Regexp) String() string { return r.src }

// FileMode is a permission mode written in octal ("0644", 0755, "2775").
type FileMode uint32

// UnmarshalYAML implements yaml.Unmarshaler. Unquoted 0644 reaches us as
// the text "0644", so both spellings read the same.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.ParseUint(strings.TrimPrefix(n.Value, "0o"), 8, 32)
	if n.Kind != yaml.ScalarNode || err != nil || v > 0o7777 {
		return fmt.Errorf("invalid mode %q (want octal, e.g. \"0644\")", n.Value)
	}
	*m = FileMode(v)
	return nil
}

func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }
