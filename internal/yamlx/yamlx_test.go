package yamlx

import (
	"fmt"
	"strings"
	"testing"
)

type vm struct {
	Memory int  `yaml:"memory"`
	EFI    bool `yaml:"efi"`
}

type step struct {
	Name string `yaml:"name"`
	Run  string `yaml:"run"`
}

type spec struct {
	Name  string            `yaml:"name"`
	VM    vm                `yaml:"vm"`
	Steps []step            `yaml:"steps"`
	Env   map[string]string `yaml:"env"`
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"name: a\ncolour: red\n", `s.yaml:2: colour: unknown field (known: env, name, steps, vm)`},
		{"name: a\nvm:\n  memory: lots\n", `s.yaml:3: vm.memory: expected an integer, got "lots"`},
		{"vm:\n  efi: maybe\n", `s.yaml:2: vm.efi: expected true or false, got "maybe"`},
		{"steps:\n  - name: a\n  - nmae: b\n", `s.yaml:3: steps[1].nmae: unknown field (known: name, run)`},
		{"steps: x\n", `s.yaml:1: steps: expected a list, got "x"`},
		{"name: [\n", `s.yaml:1: invalid YAML`},
		{"", `s.yaml: empty document`},
		{"name: a\nname: b\n", `s.yaml:2: name: given twice (first at line 1)`},
		{"env:\n  A: b\n  A: c\n", `s.yaml:3: env.A: given twice (first at line 2)`},
		{"name: &n a\nsteps:\n  - name: *n\n", `s.yaml:3: steps[0].name: YAML aliases (*n) are not allowed`},
	}
	for _, c := range cases {
		var s spec
		_, err := Decode("s.yaml", []byte(c.doc), &s)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("doc %q: got %v, want prefix %q", c.doc, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("doc %q: error is not one line: %q", c.doc, err)
		}
	}
}

// A few kilobytes of nested aliases would expand to gigabytes: refused
// at the first alias, before anything is expanded.
func TestDecodeRefusesAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("name: *a29\n")
	var s spec
	_, err := Decode("s.yaml", []byte(b.String()), &s)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("alias bomb: %v", err)
	}
	// The same inside a field the walk descends into.
	_, err = Decode("s.yaml", []byte("env:\n  A: &a x\n  B: *a\n"), &s)
	if err == nil || !strings.Contains(err.Error(), "s.yaml:3: env.B: YAML aliases (*a) are not allowed") {
		t.Fatalf("alias in a map: %v", err)
	}
}

func TestDecodeLines(t *testing.T) {
	var s spec
	lines, err := Decode("s.yaml", []byte("name: a\nvm:\n  memory: 512\nsteps:\n  - name: x\n    run: echo\nenv:\n  A: b\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.VM.Memory != 512 || s.Steps[0].Run != "echo" || s.Env["A"] != "b" {
		t.Fatalf("decoded %+v", s)
	}
	for path, want := range map[string]int{"name": 1, "vm.memory": 3, "steps[0].run": 6, "env.A": 8} {
		if lines[path] != want {
			t.Errorf("line of %s = %d, want %d", path, lines[path], want)
		}
	}
	err = lines.Errorf("s.yaml", "vm.memory", "must be at least %d", 1024)
	if err.Error() != "s.yaml:3: vm.memory: must be at least 1024" {
		t.Errorf("Errorf: %v", err)
	}
}
