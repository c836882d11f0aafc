package gobuild

import (
	"context"
	"os"
	"testing"
)

func TestStagingModules(t *testing.T) {
	gomod := []byte("module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\nreplace k8s.io/kms => ./staging/src/k8s.io/kms\n")
	got, err := stagingModules(gomod)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "k8s.io/api" || got[2] != "k8s.io/kms" {
		t.Fatalf("got %v", got)
	}
	if _, err := stagingModules([]byte("module x\n")); err == nil {
		t.Fatal("no staging lines accepted")
	}
}

func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	if _, err := Build(ctx, t.TempDir(), Request{Name: "x", Recipe: "nope", Version: "v1.0.0"}, nil); err == nil {
		t.Fatal("unknown recipe accepted")
	}
	if _, err := Build(ctx, t.TempDir(), Request{Name: "k", Recipe: "kubernetes", Version: "latest"}, nil); err == nil {
		t.Fatal("non-semver version accepted")
	}
	if _, err := Build(ctx, t.TempDir(), Request{Name: "l", Dir: "/nonexistent"}, nil); err == nil {
		t.Fatal("missing dir accepted")
	}
}

// TestRecipes builds every recipe for real when LABFORGE_GOBUILD_CACHE
// names a cache (the e2e image build exercises them too).
func TestRecipes(t *testing.T) {
	cache := os.Getenv("LABFORGE_GOBUILD_CACHE")
	if cache == "" || testing.Short() {
		t.Skip("set LABFORGE_GOBUILD_CACHE to build the recipes")
	}
	for _, r := range []Request{
		{Name: "etcd", Recipe: "etcd", Version: os.Getenv("ETCD_VERSION")},
		{Name: "coredns", Recipe: "coredns", Version: os.Getenv("COREDNS_VERSION")},
		{Name: "kubernetes", Recipe: "kubernetes", Version: os.Getenv("KUBE_VERSION")},
	} {
		if r.Version == "" {
			continue
		}
		res, err := Build(context.Background(), cache, r, os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range res.Binaries {
			t.Logf("%s %s %s cached=%v", r.Name, b.Name, b.SHA256[:12], res.Cached)
		}
	}
}
