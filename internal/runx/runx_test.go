package runx

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, s := range []string{"plain", "it's", "$(rm -rf /)", "a b\tc", `back\slash`, ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q): sh printed %q, %v", s, out, err)
		}
	}
}
