// Package aptsrc reads the host's apt configuration to find the Debian
// mirror it already uses, so labforge never names a mirror of its own.
package aptsrc

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DefaultRoot is where apt keeps its sources on a Debian host.
const DefaultRoot = "/etc/apt"

// Mirror returns the URI of the first source under root (normally
// /etc/apt) that serves suite's main component, or "" when none does
// (a non-Debian host): callers then fall back on debootstrap's default.
func Mirror(root, suite string) string {
	files := []string{filepath.Join(root, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(root, "sources.list.d", pat))
		sort.Strings(m)
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var srcs []source
		if strings.HasSuffix(f, ".sources") {
			srcs = parseDeb822(string(data))
		} else {
			srcs = parseOneLine(string(data))
		}
		for _, s := range srcs {
			if s.serves(suite) {
				return strings.TrimSuffix(s.uris[0], "/")
			}
		}
	}
	return ""
}

type source struct {
	types, uris, suites, components []string
}

func (s source) serves(suite string) bool {
	return slices.Contains(s.types, "deb") && slices.Contains(s.suites, suite) && slices.Contains(s.components, "main") && len(s.uris) > 0
}

// parseOneLine reads "deb [opts] URI suite comp..." lines.
func parseOneLine(text string) []source {
	var out []source
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		typ := f[0]
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 3 {
			continue
		}
		out = append(out, source{types: []string{typ}, uris: []string{f[0]}, suites: []string{f[1]}, components: f[2:]})
	}
	return out
}

// parseDeb822 reads stanzas of "Types:/URIs:/Suites:/Components:" fields.
func parseDeb822(text string) []source {
	var out []source
	cur := map[string][]string{}
	flush := func() {
		if len(cur) > 0 && !slices.Contains(cur["enabled"], "no") {
			out = append(out, source{types: cur["types"], uris: cur["uris"], suites: cur["suites"], components: cur["components"]})
		}
		cur = map[string][]string{}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		cur[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
	}
	flush()
	return out
}
