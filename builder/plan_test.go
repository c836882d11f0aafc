package builder

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labforge/labforge/internal/runx"

	"github.com/labforge/labforge/builder/family"
	"github.com/labforge/labforge/images"
)

var update = flag.Bool("update", false, "rewrite the golden files of the plan tests")

// planSpecs are the specs whose plans are kept as golden files: the
// walking skeleton, and one that takes every path of the plan.
var planSpecs = map[string]string{
	"debian-base": "../images/debian-base.yaml",
	"plan-lab":    "testdata/plan/lab.yaml",
}

var planBases = []string{"debian-12", "rocky-9", "alma-9", "centos-stream-9"}

// planOf is the plan of the spec at path built on base instead of its own.
func planOf(t *testing.T, path, baseName string) (*plan, family.Profile) {
	t.Helper()
	spec, err := images.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	spec.Base = baseName
	base, ok := images.LookupBase(baseName)
	if !ok {
		t.Fatalf("no base %s", baseName)
	}
	fam, err := family.Lookup(base.Family)
	if err != nil {
		t.Fatal(err)
	}
	ids := idsFor(spec.BaseHash())
	params := bootParams{Title: "labforge " + spec.Name, RootUUID: ids.RootUUID, SELinux: spec.SELinux, KernelArgs: kernelArgs(spec)}
	p, err := makePlan(spec, base, fam, planParams{Boot: params})
	if err != nil {
		t.Fatalf("plan of %s on %s: %v", path, baseName, err)
	}
	return p, fam
}

// TestPlanGolden keeps the plan of each spec on each base as text, so any
// change to what a build does to the tree shows up in review
// (go test ./builder -run TestPlanGolden -update rewrites them).
func TestPlanGolden(t *testing.T) {
	for name, path := range planSpecs {
		for _, base := range planBases {
			t.Run(name+"/"+base, func(t *testing.T) {
				p, _ := planOf(t, path, base)
				got := p.String()
				golden := filepath.Join("testdata", "plan", name+"."+base+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("plan of %s on %s differs from %s (run with -update if the change is meant):\n%s",
						name, base, golden, strings.Join(lineDiff(lines(string(want)), lines(got)), "\n"))
				}
			})
		}
	}
}

// TestFamiliesDifferOnlyByProfile: between the debian and el9 plans of one
// spec, every line that differs comes from a step that names a profile
// field whose values differ between the two families.
func TestFamiliesDifferOnlyByProfile(t *testing.T) {
	for name, path := range planSpecs {
		deb, debFam := planOf(t, path, "debian-12")
		for _, base := range planBases[1:] {
			el, elFam := planOf(t, path, base)
			for _, u := range unexplained(deb, el, debFam, elFam) {
				t.Errorf("%s, debian-12 against %s: %s", name, base, u)
			}
		}
	}
}

// TestUnexplainedCatchesBranches: a difference that no profile field
// accounts for (what an if on the distribution would make) is reported.
func TestUnexplainedCatchesBranches(t *testing.T) {
	deb, debFam := planOf(t, planSpecs["plan-lab"], "debian-12")
	el, elFam := planOf(t, planSpecs["plan-lab"], "rocky-9")
	el.Tree = append(el.Tree, step{Op: opRun, Args: []string{"restorecon", "-R", "/home"}})
	got := unexplained(deb, el, debFam, elFam)
	if len(got) != 1 || !strings.Contains(got[0], "restorecon") {
		t.Fatalf("an unannotated step must be reported alone, got %q", got)
	}
	// A step that names a field both families agree on explains nothing.
	el.Tree[len(el.Tree)-1].Family = []string{"RootFS"}
	debFam.RootFS = elFam.RootFS
	if got := unexplained(deb, el, debFam, elFam); len(got) == 0 {
		t.Fatal("a field with equal values must not explain a difference")
	}
}

// planLine is one rendered line and the profile fields of its step.
type planLine struct {
	text   string
	family []string
}

func planLines(p *plan) []planLine {
	var out []planLine
	for _, section := range [][]step{p.RootFS, p.Tree} {
		out = append(out, planLine{text: "# section"})
		for _, s := range section {
			for _, l := range lines(s.String()) {
				if i := strings.Index(l, familyMark); i >= 0 {
					l = l[:i]
				}
				out = append(out, planLine{text: l, family: s.Family})
			}
		}
	}
	return out
}

// unexplained lists the lines of a and b's difference that no differing
// profile field accounts for, and annotations that name no field.
func unexplained(a, b *plan, fa, fb family.Profile) []string {
	la, lb := planLines(a), planLines(b)
	var out []string
	check := func(sign string, l planLine) {
		for _, f := range l.family {
			if !isField(f) {
				out = append(out, fmt.Sprintf("%s %s: names %q, not a profile field", sign, l.text, f))
				return
			}
			if differs(fa, fb, f) {
				return
			}
		}
		out = append(out, fmt.Sprintf("%s %s: not explained by the family profile", sign, l.text))
	}
	ta, tb := make([]string, len(la)), make([]string, len(lb))
	for i, l := range la {
		ta[i] = l.text
	}
	for i, l := range lb {
		tb[i] = l.text
	}
	ia, ib := 0, 0
	for _, d := range lcsDiff(ta, tb) {
		switch d {
		case '=':
			ia++
			ib++
		case '-':
			check("-", la[ia])
			ia++
		case '+':
			check("+", lb[ib])
			ib++
		}
	}
	return out
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// lcsDiff is the edit script from a to b: '=' keep, '-' drop from a, '+'
// add from b (longest common subsequence; plans are a few hundred lines).
func lcsDiff(a, b []string) []byte {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []byte
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out = append(out, '=')
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, '+')
			j++
		default:
			out = append(out, '-')
			i++
		}
	}
	return out
}

// lineDiff renders the difference of a and b, one changed line each.
func lineDiff(a, b []string) []string {
	var out []string
	i, j := 0, 0
	for _, d := range lcsDiff(a, b) {
		switch d {
		case '=':
			i++
			j++
		case '-':
			out = append(out, "- "+a[i])
			i++
		case '+':
			out = append(out, "+ "+b[j])
			j++
		}
	}
	return out
}

// A module the el9 policy lacks, with no source to build it from, is an
// error naming the spec's file, line and field.
func TestPlanModuleTheFamilyCannotBuild(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(path, []byte("name: x\nbase: rocky-9\npolicyModules:\n  - container\n  - apache\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := func() (p *plan, err error) {
		spec, err := images.Load(path)
		if err != nil {
			return nil, err
		}
		base, _ := images.LookupBase(spec.Base)
		return makePlan(spec, base, family.EL9, planParams{})
	}()
	if err == nil || !strings.Contains(err.Error(), "x.yaml:5") || !strings.Contains(err.Error(), "policyModules[1]") || !strings.Contains(err.Error(), `"apache"`) {
		t.Fatalf("got %v", err)
	}
}

// differs tells whether field (a Profile field name) has different values
// in a and b; it panics on a name that is not a field, which only a
// mistyped annotation in the builder can cause.
func differs(a, b family.Profile, field string) bool {
	va := reflect.ValueOf(a).FieldByName(field)
	vb := reflect.ValueOf(b).FieldByName(field)
	if !va.IsValid() {
		panic("no profile field " + field)
	}
	return !reflect.DeepEqual(va.Interface(), vb.Interface())
}

// isField tells whether name is a field of Profile.
func isField(name string) bool {
	_, ok := reflect.TypeOf(family.Profile{}).FieldByName(name)
	return ok
}

// String renders the plan as text, one step a line (a written file's
// content follows it, indented), each line that depends on the family
// ending with the profile fields it used.
func (p *plan) String() string {
	var b strings.Builder
	b.WriteString("# root fs\n")
	for _, s := range p.RootFS {
		b.WriteString(s.String())
	}
	b.WriteString("# tree\n")
	for _, s := range p.Tree {
		b.WriteString(s.String())
	}
	return b.String()
}

// familyMark starts the annotation of a family-dependent step's line.
const familyMark = "  # family: "

func (s step) String() string {
	var head string
	switch s.Op {
	case opHost, opRun:
		head = string(s.Op) + " " + quoteArgs(s.Args)
	case opBase:
		head = "base " + s.Src + " sha256 " + s.Path
	case opWrite:
		head = fmt.Sprintf("write %s %04o", s.Path, s.Mode)
	case opCopy:
		head = "copy " + s.Src + " " + s.Path
		if s.Optional {
			head += " (if present)"
		}
	case opLink:
		head = "link " + s.Path + " -> " + s.Src
	default:
		head = string(s.Op) + " " + s.Path
	}
	if len(s.Family) > 0 {
		head += familyMark + strings.Join(s.Family, ", ")
	}
	var b strings.Builder
	b.WriteString(head + "\n")
	if s.Op == opWrite && len(s.Data) > 0 {
		// Templates are shown whole; labforge's policy modules by digest,
		// as they are the same for every family.
		if len(s.Data) > 1024 {
			fmt.Fprintf(&b, "  | (%d bytes, sha256 %x)\n", len(s.Data), sha256.Sum256(s.Data))
		} else {
			for _, l := range strings.Split(strings.TrimSuffix(string(s.Data), "\n"), "\n") {
				b.WriteString(strings.TrimRight("  | "+l, " ") + "\n")
			}
		}
	}
	return b.String()
}

func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		// Commands run without a shell; quoting only keeps words apart.
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			out[i] = runx.Quote(a)
		}
	}
	return strings.Join(out, " ")
}
