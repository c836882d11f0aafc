package labs

import (
	"strings"
	"testing"
)

// Every wrong attempt of the course names text its failing check must print
// (output:): ci --wrong-attempts then proves that the check failed for that
// mistake, not for a broken host, so that the hint shown fits the mistake.
func TestEveryWrongAttemptNamesItsOutput(t *testing.T) {
	c := course(t)
	n := 0
	for _, e := range c.Exercises {
		for _, w := range e.WrongAttempts {
			n++
			if strings.TrimSpace(w.Output) == "" {
				t.Errorf("%s: wrong attempt %q names no output: give it text that check %q prints for this mistake", e.ID, w.Name, w.Fails)
			}
		}
	}
	if n == 0 {
		t.Fatal("the course has no wrong attempts")
	}
}
