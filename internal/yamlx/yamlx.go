// Package yamlx decodes YAML strictly: unknown fields and wrong types are
// errors that name the file, the line and the field path, and the line of
// every field is kept so that later validation can point at it too.
package yamlx

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Lines maps a field path ("vm.memory", "provision[2].run") to the line
// it was written on.
type Lines map[string]int

// Error is a decode or validation error at one place in one file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Errorf builds an Error for field, taking its line from lines.
// A field that was left out is reported at its nearest written parent.
func (l Lines) Errorf(file, field, format string, args ...any) error {
	return &Error{File: file, Line: l.nearest(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (l Lines) nearest(field string) int {
	for f := field; f != ""; {
		if n, ok := l[f]; ok {
			return n
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// Decode decodes data, named file in errors, into out.
func Decode(file string, data []byte, out any) (Lines, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(file, err)
	}
	lines := Lines{}
	if len(doc.Content) == 0 {
		return lines, &Error{File: file, Msg: "empty document"}
	}
	root := doc.Content[0]
	if err := check(file, root, reflect.TypeOf(out).Elem(), "", lines); err != nil {
		return nil, err
	}
	if err := root.Decode(out); err != nil {
		return nil, decodeError(file, root.Line, err)
	}
	return lines, nil
}

// syntaxError turns yaml's "yaml: line N: msg" into file:N: msg.
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// decodeError keeps the first of yaml's "unmarshal errors:" list, as
// file:line: msg, so that every error stays one line.
func decodeError(file string, line int, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return &Error{File: file, Line: line, Msg: strings.ReplaceAll(err.Error(), "\n", " ")}
	}
	msg := te.Errors[0]
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	if more := len(te.Errors) - 1; more > 0 {
		msg += fmt.Sprintf(" (and %d more)", more)
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// duplicateKey rejects a mapping that gives one key twice; yaml would
// report it only after the walk, without the field's path.
func duplicateKey(file string, n *yaml.Node, path string) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if first, ok := seen[k.Value]; ok {
			return &Error{File: file, Line: k.Line, Field: join(path, k.Value),
				Msg: fmt.Sprintf("given twice (first at line %d)", first)}
		}
		seen[k.Value] = k.Line
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// check walks node against type t, recording lines and rejecting unknown
// fields and values of the wrong kind before yaml fills the struct.
func check(file string, n *yaml.Node, t reflect.Type, path string, lines Lines) error {
	// An alias repeats a node wherever it is used, so a few lines of
	// aliases to aliases expand to gigabytes (the billion laughs). Specs,
	// suites and exercises are short and plain: none is allowed.
	if n.Kind == yaml.AliasNode {
		return &Error{File: file, Line: n.Line, Field: path, Msg: fmt.Sprintf("YAML aliases (*%s) are not allowed: write the value out", n.Value)}
	}
	if path != "" {
		lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return decodeLeaf(file, n, t, path)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return check(file, n, t.Elem(), path, lines)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return wrongKind(file, n, path, "a mapping")
		}
		if err := duplicateKey(file, n, path); err != nil {
			return err
		}
		fields := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return &Error{File: file, Line: k.Line, Field: join(path, k.Value),
					Msg: fmt.Sprintf("unknown field (known: %s)", known(fields))}
			}
			if err := check(file, v, f.Type, join(path, k.Value), lines); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return wrongKind(file, n, path, "a mapping")
		}
		if err := duplicateKey(file, n, path); err != nil {
			return err
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if err := check(file, v, t.Elem(), join(path, k.Value), lines); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrongKind(file, n, path, "a list")
		}
		for i, c := range n.Content {
			if err := check(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines); err != nil {
				return err
			}
		}
		return nil
	case reflect.Interface:
		return nil
	default:
		if n.Kind != yaml.ScalarNode {
			return wrongKind(file, n, path, "a single value")
		}
		return decodeLeaf(file, n, t, path)
	}
}

func decodeLeaf(file string, n *yaml.Node, t reflect.Type, path string) error {
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msg = fmt.Sprintf("expected %s, got %q", kindName(t), n.Value)
		}
		return &Error{File: file, Line: n.Line, Field: path, Msg: msg}
	}
	return nil
}

func wrongKind(file string, n *yaml.Node, path, want string) error {
	got := map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.ScalarNode: fmt.Sprintf("%q", n.Value)}[n.Kind]
	return &Error{File: file, Line: n.Line, Field: path, Msg: fmt.Sprintf("expected %s, got %s", want, got)}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

type field struct{ Type reflect.Type }

// structFields lists the yaml names of t's fields, following inline structs.
func structFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range structFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = field{Type: f.Type}
	}
	return out
}

func known(fields map[string]field) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
