package schema

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "write the schemas into the repository")

const root = "../.."

// The schemas in the repository are what the Go types make today
// (go test ./internal/schema -update writes them).
func TestSchemasCurrent(t *testing.T) {
	for _, k := range Kinds {
		got, err := k.Generate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join(root, k.File)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the %s type makes (%v); run go test ./internal/schema -update", k.File, k.Name, err)
		}
	}
}

// Every spec, suite and exercise in the repository passes its schema, and
// the schemas reject what the loaders reject (an unknown field).
func TestRepositoryFilesValid(t *testing.T) {
	globs := map[string][]string{
		"spec":     {"images/*.yaml", "bench/*.yaml", "test/e2e/testdata/*.yaml", "builder/testdata/plan/*.yaml"},
		"suite":    {"images/*.verify.yaml", "test/e2e/testdata/*.verify.yaml"},
		"exercise": {"labs/part*/*/exercise.yaml"},
	}
	counted := 0
	for _, k := range Kinds {
		sch := compile(t, k)
		for _, g := range globs[k.Name] {
			files, _ := filepath.Glob(filepath.Join(root, g))
			for _, f := range files {
				isSuite := strings.HasSuffix(f, ".verify.yaml")
				if (k.Name == "spec") == isSuite && k.Name != "exercise" {
					continue // a spec glob also matches suites
				}
				if err := sch.Validate(load(t, f)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
				counted++
			}
		}
		bad := map[string]any{"colour": "red"}
		if err := sch.Validate(bad); err == nil {
			t.Errorf("the %s schema takes an unknown field", k.Name)
		}
	}
	if counted < 20 {
		t.Fatalf("only %d files validated", counted)
	}
}

func compile(t *testing.T, k Kind) *jsonschema.Schema {
	t.Helper()
	data, err := k.Generate()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(k.File, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(k.File)
	if err != nil {
		t.Fatalf("%s: %v", k.File, err)
	}
	return s
}

// load reads a YAML file as the JSON data model the validator takes.
func load(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}
