package verify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const exampleSuite = `name: container-internals host
defaults: {timeout: 30s, retries: 0, interval: 2s}
checks:
  - name: selinux enforcing
    command: getenforce
    stdout: ^Enforcing$
    timeout: 1m
    hint: run setenforce 1
  - name: sshd config
    file: /etc/ssh/sshd_config
    mode: 0644
    owner: root
    group: root
    selinux: etc_t
    contains: ^PermitRootLogin
  - name: sshd running
    service: ssh
    enabled: true
  - name: openssh installed
    package: openssh-server
    version: "^1:9"
  - name: ip forwarding
    sysctl: net.ipv4.ip_forward
    value: 1
  - name: dns
    port: 53
    proto: udp
`

func TestParseExample(t *testing.T) {
	s, err := Parse("suite.yaml", []byte(exampleSuite))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "container-internals host" {
		t.Errorf("Name = %q", s.Name)
	}
	var types []string
	for _, c := range s.Checks {
		types = append(types, string(c.Type))
	}
	if got, want := strings.Join(types, " "), "command file service package sysctl port"; got != want {
		t.Errorf("types = %s, want %s", got, want)
	}
	if got := time.Duration(s.Checks[0].Timeout); got != time.Minute {
		t.Errorf("timeout = %v, want 1m", got)
	}
	if got := time.Duration(s.Defaults.Interval); got != 2*time.Second {
		t.Errorf("defaults.interval = %v, want 2s", got)
	}
	if m := s.Checks[1].Mode; m == nil || *m != 0o644 {
		t.Errorf("unquoted mode 0644 = %v, want 0644", m)
	}
	if v := s.Checks[4].Value; v == nil || *v != "1" {
		t.Errorf("sysctl value = %v, want \"1\"", v)
	}
}

func TestParseDefaultsName(t *testing.T) {
	s, err := Parse("labs/base.yaml", []byte("checks:\n  - {name: ok, command: 'true'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "base" {
		t.Errorf("Name = %q, want base (from the file name)", s.Name)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown field", "checks:\n  - name: a\n    command: 'true'\n    stdot: x\n", 4, `checks[0].stdot: unknown check type or field "stdot" (types: command, file, service, package, sysctl, port; fields: name, hint,`},
		{"unknown check type", "checks:\n  - name: a\n    fil: /etc/x\n", 3, `checks[0].fil: unknown check type or field "fil" (types: command, file,`},
		{"unknown top-level field", "checks: []\nnmae: x\n", 2, "nmae: unknown field (known: checks, defaults, name)"},
		{"no type key", "checks:\n  - name: a\n    hint: nothing to check\n", 2, `checks[0]: check "a" has no type: give one of command, file, service, package, sysctl, port`},
		{"two type keys", "checks:\n  - name: a\n    command: 'true'\n    file: /etc/x\n", 4, `checks[0].file: a check has exactly one type, but "a" has both command and file`},
		{"duplicate name", "checks:\n  - {name: a, command: 'true'}\n  - name: b\n    command: 'true'\n  - name: a\n    command: 'false'\n", 5, `checks[2].name: duplicate check name "a" (first at line 2)`},
		{"missing name", "checks:\n  - {name: a, command: 'true'}\n  - command: 'true'\n", 3, "checks[1].name: required"},
		{"bad duration", "checks:\n  - name: a\n    command: 'true'\n    timeout: soon\n", 4, `checks[0].timeout: invalid duration "soon" (want e.g. 30s, 2m)`},
		{"duration without unit", "defaults:\n  timeout: 30\nchecks:\n  - {name: a, command: 'true'}\n", 2, `defaults.timeout: invalid duration "30"`},
		{"negative retries", "defaults: {retries: -1}\nchecks:\n  - {name: a, command: 'true'}\n", 1, "defaults.retries: must not be negative"},
		{"field of another type", "checks:\n  - name: a\n    command: 'true'\n    mode: '0644'\n", 4, "checks[0].mode: not a field of a command check (it belongs to file checks)"},
		{"bad regexp", "checks:\n  - name: a\n    command: 'true'\n    stdout: '(unclosed'\n", 4, `checks[0].stdout: invalid regular expression "(unclosed"`},
		{"bad mode", "checks:\n  - name: a\n    file: /etc/x\n    mode: '0999'\n", 4, `checks[0].mode: invalid mode "0999"`},
		{"relative file", "checks:\n  - name: a\n    file: etc/x\n", 3, `checks[0].file: must be an absolute path`},
		{"absent with mode", "checks:\n  - name: a\n    file: /etc/x\n    exists: false\n    mode: '0644'\n", 5, "checks[0].mode: cannot be checked with exists: false"},
		{"bad port", "checks:\n  - name: a\n    port: 70000\n", 3, "checks[0].port: must be between 1 and 65535"},
		{"bad proto", "checks:\n  - name: a\n    port: 22\n    proto: sctp\n", 4, `checks[0].proto: must be tcp or udp, got "sctp"`},
		{"option-like package", "checks:\n  - name: a\n    package: --all\n", 3, `checks[0].package: invalid package name "--all"`},
		{"wrong kind", "checks:\n  - name: a\n    command: [a, b]\n", 3, "checks[0].command: expected a single value, got a list"},
		{"no checks", "name: empty\n", 0, "checks: at least one check is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("suite.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			prefix := "suite.yaml: "
			if tt.line > 0 {
				prefix = "suite.yaml:" + strconv.Itoa(tt.line) + ": "
			}
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q\nwant one line starting %q containing %q", msg, prefix, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.yaml")
	if err := os.WriteFile(path, []byte("checks:\n  - name: a\n    command: 'true'\n    exit: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:4: checks[0].exit: expected an integer, got "nope"`; err == nil || err.Error() != want {
		t.Errorf("Load error = %v\nwant %s", err, want)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestSELinuxPattern(t *testing.T) {
	ctx := "system_u:object_r:etc_t:s0"
	for pat, want := range map[string]bool{
		"etc_t":                      true,
		"etc_t|httpd_config_t":       true,
		"etc":                        false, // a bare type matches the whole type
		"system_u:object_r:etc_t:s0": true,
		"system_u:object_r:.*":       true,
		"unconfined_u:.*":            false,
	} {
		re, err := selinuxPattern(pat)
		if err != nil {
			t.Fatalf("%s: %v", pat, err)
		}
		if got := re.MatchString(ctx); got != want {
			t.Errorf("%q matches %s = %v, want %v", pat, ctx, got, want)
		}
	}
	if re, _ := selinuxPattern("etc_t"); re.MatchString("?") {
		t.Error("etc_t matches an unlabelled file")
	}
}
