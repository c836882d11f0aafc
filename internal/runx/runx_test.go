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

func TestQuoteAll(t *testing.T) {
	words := []string{"it's", "$(rm -rf /)", "a b", ""}
	out, err := exec.Command("sh", "-c", `for w in `+QuoteAll(words)+`; do printf '[%s]' "$w"; done`).Output()
	if err != nil || string(out) != "[it's][$(rm -rf /)][a b][]" {
		t.Fatalf("sh printed %q, %v", out, err)
	}
}
