package verify

import "time"

// CapTimeouts shortens every check's retry window to at most max (0 or
// less: no change): on a host already booted there is nothing to wait for.
func (s *Suite) CapTimeouts(max time.Duration) {
	if max <= 0 {
		return
	}
	limit := func(d *Duration) {
		if *d == 0 || time.Duration(*d) > max {
			*d = Duration(max)
		}
	}
	// The default covers every check without its own, the built-in 30 s too.
	limit(&s.Defaults.Timeout)
	for i := range s.Checks {
		if s.Checks[i].Timeout != 0 {
			limit(&s.Checks[i].Timeout)
		}
	}
}
