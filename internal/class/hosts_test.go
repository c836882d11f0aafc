package class

import (
	"reflect"
	"testing"
)

const gib = 1 << 30

func counts(place []int, hosts int) []int {
	n := make([]int, hosts)
	for _, h := range place {
		n[h]++
	}
	return n
}

// Two hosts that report the same memory (the e2e's second hypervisor is
// this machine in a network namespace) take turns.
func TestPlaceEqualHostsSpread(t *testing.T) {
	hosts := []Capacity{{URI: "a", FreeMem: 7 * gib, CPUs: 2}, {URI: "b", FreeMem: 7 * gib, CPUs: 2}}
	got := Place(hosts, 4, 2*gib, 2)
	if want := []int{0, 1, 0, 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Place = %v, want %v", got, want)
	}
}

// Free memory read moments apart differs by a few pages: still 2/2,
// whichever host reads a little more.
func TestPlaceJitterStillSpreads(t *testing.T) {
	for _, d := range []uint64{1 << 20, 300 << 20} {
		for _, hosts := range [][]Capacity{
			{{FreeMem: 7*gib + d, CPUs: 2}, {FreeMem: 7 * gib, CPUs: 2}},
			{{FreeMem: 7 * gib, CPUs: 2}, {FreeMem: 7*gib + d, CPUs: 2}},
			{{FreeMem: 8*gib - d, CPUs: 2}, {FreeMem: 8 * gib, CPUs: 2}},
		} {
			if got := counts(Place(hosts, 4, 2*gib, 2), 2); got[0] != 2 || got[1] != 2 {
				t.Errorf("%+v: split %v, want 2/2", hosts, got)
			}
		}
	}
}

// The host with more free memory takes more students, until both have
// as much left.
func TestPlaceByFreeMemory(t *testing.T) {
	hosts := []Capacity{{FreeMem: 4 * gib, CPUs: 8}, {FreeMem: 12 * gib, CPUs: 8}}
	got := counts(Place(hosts, 6, 2*gib, 2), 2)
	if want := []int{1, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("split %v, want %v", got, want)
	}
}

// Between hosts with equal memory, the one whose CPUs carry fewer of the
// class's vCPUs gets the student.
func TestPlaceCPUTieBreak(t *testing.T) {
	hosts := []Capacity{{FreeMem: 64 * gib, CPUs: 2}, {FreeMem: 64 * gib, CPUs: 8}}
	if got := Place(hosts, 1, 2*gib, 2); got[0] != 1 {
		t.Fatalf("first student on host %d, want the 8-CPU host", got[0])
	}
	// Memory first: once the 8-CPU host has one more student, memory
	// counted in whole students makes the other host the roomier one.
	if got := counts(Place(hosts, 4, 2*gib, 2), 2); got[0] != 2 || got[1] != 2 {
		t.Fatalf("split %v, want 2/2", got)
	}
}

// One host: everyone there, even past its free memory (QEMU allocates
// lazily; placement does not refuse).
func TestPlaceOneHost(t *testing.T) {
	if got := Place([]Capacity{{FreeMem: gib, CPUs: 2}}, 3, 2*gib, 2); !reflect.DeepEqual(got, []int{0, 0, 0}) {
		t.Fatalf("Place = %v", got)
	}
}

func TestHostOf(t *testing.T) {
	c := &Class{Hosts: map[string]string{"x-s02": "qemu+ssh://root@h/system"}}
	if got := c.HostOf("x-s01"); got != "qemu:///system" {
		t.Errorf("unplaced student: %q", got)
	}
	if got := c.HostOf("x-s02"); got != "qemu+ssh://root@h/system" {
		t.Errorf("placed student: %q", got)
	}
}
