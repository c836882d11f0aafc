package verify

import (
	"testing"
	"time"
)

func TestCapTimeouts(t *testing.T) {
	s := &Suite{Checks: []Check{
		{Name: "own default"},
		{Name: "long", Timeout: Duration(5 * time.Minute)},
		{Name: "short", Timeout: Duration(5 * time.Second)},
	}}
	s.CapTimeouts(15 * time.Second)
	if got := time.Duration(s.Defaults.Timeout); got != 15*time.Second {
		t.Errorf("the suite's default: %s, want the cap (it stood for the built-in %s)", got, DefaultTimeout)
	}
	want := []time.Duration{0, 15 * time.Second, 5 * time.Second}
	for i, c := range s.Checks {
		if got := time.Duration(c.Timeout); got != want[i] {
			t.Errorf("%s: %s, want %s", c.Name, got, want[i])
		}
	}

	s = &Suite{Defaults: Defaults{Timeout: Duration(time.Second)}, Checks: []Check{{Name: "long", Timeout: Duration(time.Hour)}}}
	s.CapTimeouts(0)
	if s.Defaults.Timeout != Duration(time.Second) || s.Checks[0].Timeout != Duration(time.Hour) {
		t.Errorf("no cap changed the suite: %+v", s)
	}
	s.CapTimeouts(time.Minute)
	if s.Defaults.Timeout != Duration(time.Second) {
		t.Errorf("a default under the cap changed: %s", time.Duration(s.Defaults.Timeout))
	}
}
