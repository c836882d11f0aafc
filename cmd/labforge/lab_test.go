package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLabList(t *testing.T) {
	out, err := run(t, "lab", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "p2-seccomp", "P2.5", "(starts broken)"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab list lacks %q:\n%s", want, out)
		}
	}
	plain, err := run(t, "lab", "list", "--plain")
	if err != nil || !strings.Contains(plain, "p2-seccomp\t2\tP2.5\t") {
		t.Fatalf("lab list --plain: %v\n%s", err, plain)
	}
}

func TestLabShow(t *testing.T) {
	out, err := run(t, "lab", "show", "p2-ovs-repair", "--width", "70")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "\x1b[") || !strings.Contains(out, "# Repair the Open vSwitch pod network") || !strings.Contains(out, "starts broken") || !strings.Contains(out, "ovs-ofctl dump-flows br-pods") {
		t.Errorf("lab show:\n%s", out)
	}
	md, err := run(t, "lab", "show", "p2-ovs-repair", "--markdown")
	if err != nil || !strings.HasPrefix(md, "# Repair") {
		t.Fatalf("--markdown: %v\n%s", err, md)
	}
}

func TestLabBadInputs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LABFORGE_STATE", filepath.Join(dir, "state"))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"lab", "show", "p9-nope"}, `no exercise "p9-nope" (exercises: p1-daemon-map`},
		{[]string{"lab", "check"}, "name an exercise (labforge lab list), or --all"},
		{[]string{"lab", "check", "--all", "p2-seccomp"}, "give exercise ids or --all, not both"},
		{[]string{"lab", "start", "p2-seccomp", "-n", "nope"}, `no instance "nope"`},
		{[]string{"lab", "solve", "p2-nope"}, `no exercise "p2-nope"`},
		{[]string{"ci", filepath.Join(dir, "none.yaml")}, "none.yaml: no such file"},
		{[]string{"ci", "images/debian-base.yaml", "--only", "p2-nope"}, `no exercise "p2-nope"`},
		{[]string{"ci", "images/debian-base.yaml", "--wrong-attempts=p2-seccomp,p2-nope"}, `--wrong-attempts: no exercise "p2-nope"`},
		{[]string{"ci", "--on", "nope"}, `no instance "nope"`},
		{[]string{"ci", "--on", "nope", "--only", "p2-nope"}, `no exercise "p2-nope"`},
		{[]string{"lab", "hint", "p2-seccomp", "-n", "nope"}, `no instance "nope"`},
	}
	for _, c := range cases {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("labforge %v: got %v, want one line containing %q", c.args, err, c.want)
		}
	}
}
