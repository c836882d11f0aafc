package gobuild

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

//go:embed recipes
var recipeFS embed.FS

type target struct{ name, pkg string }

// recipe says how to build one upstream project from the module proxy: a
// scratch module (go.mod and maybe a main.go) and the packages to build.
type recipe struct {
	versionRe *regexp.Regexp
	tags      []string
	targets   []target
	// prepare writes the scratch module into dir.
	prepare func(ctx context.Context, dir, version string, log io.Writer) error
	ldflags func(version string) string
}

func (r recipe) check(version string) error {
	if !r.versionRe.MatchString(version) {
		return fmt.Errorf("version %q does not look like %s", version, r.versionRe)
	}
	return nil
}

// Recipes lists the known recipe names.
func Recipes() []string {
	var out []string
	for k := range recipes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Targets lists the binaries a recipe makes.
func Targets(name string) []string {
	var out []string
	for _, t := range recipes[name].targets {
		out = append(out, t.name)
	}
	return out
}

var semver = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

var recipes = map[string]recipe{
	// The six daemons and the client, each its own binary so that students
	// see each one as a systemd unit.
	"kubernetes": {
		versionRe: semver,
		tags:      []string{"selinux", "notest", "grpcnotrace"},
		targets: []target{
			{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"},
			{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"},
			{"kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"},
			{"kubelet", "k8s.io/kubernetes/cmd/kubelet"},
			{"kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"},
			{"kubectl", "k8s.io/kubernetes/cmd/kubectl"},
		},
		prepare: prepareKubernetes,
		ldflags: kubeLdflags,
	},
	"etcd": {
		versionRe: semver,
		targets:   []target{{"etcd", "."}, {"etcdctl", "go.etcd.io/etcd/etcdctl/v3"}},
		prepare:   templated("etcd"),
		ldflags:   func(string) string { return "" },
	},
	// crictl, the CRI's own client: students follow a pod from the kubelet
	// to containerd with it. Not packaged by Debian 12.
	"cri-tools": {
		versionRe: semver,
		targets:   []target{{"crictl", "sigs.k8s.io/cri-tools/cmd/crictl"}},
		prepare:   templated("cri-tools"),
		ldflags: func(version string) string {
			return "-X sigs.k8s.io/cri-tools/pkg/version.Version=" + version
		},
	},
	// CoreDNS with only the plugins a cluster's DNS needs: a fraction of
	// the upstream build's dependencies.
	"coredns": {
		versionRe: semver,
		targets:   []target{{"coredns", "."}},
		prepare:   templated("coredns"),
		ldflags:   func(string) string { return "" },
	},
}

// templated writes recipes/NAME/* (Go templates over .Version) into dir.
func templated(name string) func(ctx context.Context, dir, version string, log io.Writer) error {
	return func(ctx context.Context, dir, version string, log io.Writer) error {
		entries, err := recipeFS.ReadDir("recipes/" + name)
		if err != nil {
			return err
		}
		for _, e := range entries {
			text, err := recipeFS.ReadFile("recipes/" + name + "/" + e.Name())
			if err != nil {
				return err
			}
			t, err := template.New(e.Name()).Parse(string(text))
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := t.Execute(&b, struct{ Version string }{version}); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, strings.TrimSuffix(e.Name(), ".tmpl")), b.Bytes(), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// prepareKubernetes writes a module that requires k8s.io/kubernetes and,
// as its own go.mod does with ./staging paths, pins every staging module
// (k8s.io/api, k8s.io/client-go, ...) to the matching v0 release.
func prepareKubernetes(ctx context.Context, dir, version string, log io.Writer) error {
	gomod, err := downloadGoMod(ctx, dir, "k8s.io/kubernetes@"+version, log)
	if err != nil {
		return err
	}
	staging, err := stagingModules(gomod)
	if err != nil {
		return err
	}
	v0 := "v0" + strings.TrimPrefix(version, "v1")
	var b strings.Builder
	fmt.Fprintf(&b, "module labforge.local/build/kubernetes\n\ngo 1.24\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", version)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, v0)
	}
	b.WriteString(")\n")
	return os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644)
}

// downloadGoMod fetches one module's go.mod through the module proxy.
func downloadGoMod(ctx context.Context, dir, mod string, log io.Writer) ([]byte, error) {
	var out bytes.Buffer
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module labforge.local/probe\n"), 0o644); err != nil {
		return nil, err
	}
	if err := runGo(ctx, dir, io.MultiWriter(log, &out), "mod", "download", "-json", mod); err != nil {
		return nil, err
	}
	var info struct{ GoMod string }
	// The log line "$ go ..." precedes the JSON.
	js := out.Bytes()
	if i := bytes.IndexByte(js, '{'); i >= 0 {
		js = js[i:]
	}
	if err := json.Unmarshal(js, &info); err != nil || info.GoMod == "" {
		return nil, fmt.Errorf("go mod download %s: no go.mod in %q", mod, out.String())
	}
	return os.ReadFile(info.GoMod)
}

var stagingRe = regexp.MustCompile(`^\s*(?:replace\s+)?(k8s\.io/[a-z0-9-]+)\s+=>\s+\./staging/`)

func stagingModules(gomod []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if m := stagingRe.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ./staging replacements in k8s.io/kubernetes's go.mod")
	}
	return out, nil
}

func kubeLdflags(version string) string {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	var b strings.Builder
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, "-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=1970-01-01T00:00:00Z ",
			pkg, version, pkg, parts[0], pkg, parts[1], pkg, pkg)
	}
	return strings.TrimSpace(b.String())
}
