package labs

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/charmbracelet/glamour"
)

// Markdown is the exercise as one Markdown document: a header naming its
// id, part and objectives, then its instructions.
func (e *Exercise) Markdown() string {
	var b strings.Builder
	body := strings.TrimSpace(e.Instructions)
	// The README's own title stands; without one, the exercise's title does.
	if !strings.HasPrefix(body, "# ") {
		fmt.Fprintf(&b, "# %s\n\n", e.Title)
	}
	head, rest, _ := strings.Cut(body, "\n")
	if strings.HasPrefix(body, "# ") {
		b.WriteString(head + "\n\n")
	} else {
		rest = body
	}
	var objs []string
	for _, id := range e.Objectives {
		for _, o := range Objectives {
			if o.ID == id {
				objs = append(objs, fmt.Sprintf("%s (%s)", id, o.Title))
			}
		}
	}
	fmt.Fprintf(&b, "Exercise %s, part %d. Objectives: %s.", e.ID, e.Part, strings.Join(objs, "; "))
	if e.Broken {
		b.WriteString(" This exercise starts broken: something on the host needs repairing.")
	}
	fmt.Fprintf(&b, "\n\nBegin with `labs start %s`; `labs check %s` checks your work. Your files go in\n"+
		"`~/labs/%s/` of your own account, also when you work as root (after `sudo -i`, `~` is /root).",
		e.ID, e.ID, e.ID)
	b.WriteString("\n\n" + strings.TrimSpace(rest) + "\n")
	return b.String()
}

// Render formats the exercise for a terminal width columns wide: headings,
// wrapped paragraphs and indented code blocks, with colour when color is
// set (a terminal) and plain text otherwise (a pipe, a file).
func (e *Exercise) Render(width int, color bool) (string, error) {
	return RenderMarkdown(e.Markdown(), width, color)
}

// RenderMarkdown renders Markdown for a terminal (see Render).
func RenderMarkdown(md string, width int, color bool) (string, error) {
	if width < 20 {
		width = 80
	}
	style := "notty"
	if color {
		style = "dark"
	}
	r, err := glamour.NewTermRenderer(glamour.WithStandardStyle(style), glamour.WithWordWrap(width))
	if err != nil {
		return "", fmt.Errorf("markdown renderer: %w", err)
	}
	out, err := r.Render(unwrap(md))
	if err != nil {
		return "", fmt.Errorf("render markdown: %w", err)
	}
	if color {
		return out, nil
	}
	// glamour pads every line to the width; a pipe or a file is better without.
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n"), nil
}

// blockStart matches a line that begins a Markdown block of its own.
var blockStart = regexp.MustCompile("^\\s*([#>|]|[-*+] |[0-9]+[.)] |```)")

// unwrap joins the lines of each paragraph and list item into one. glamour
// keeps a soft line break inside a list item as a hard one, so text wrapped
// in the source would come out wrapped twice, ragged.
func unwrap(md string) string {
	var out []string
	inCode, joinable := false, false
	for _, l := range strings.Split(md, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "```"):
			inCode = !inCode
			out = append(out, l)
			joinable = false
		case inCode || t == "":
			out = append(out, l)
			joinable = false
		case joinable && !blockStart.MatchString(l) && !strings.HasPrefix(l, "    "+strings.Repeat(" ", 4)):
			out[len(out)-1] += " " + t
		default:
			out = append(out, l)
			joinable = !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "|")
		}
	}
	return strings.Join(out, "\n")
}
