package class

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
)

// Entry is one student's line of the roster.
type Entry struct {
	Student string `json:"student"`
	Host    string `json:"host"` // hypervisor
	SSHPort int    `json:"sshPort"`
	SSH     string `json:"ssh"` // the command that logs in
	KeyFile string `json:"keyFile"`
	Status  string `json:"status"`
}

func entryFor(c *Class, s string, inst *instance.Instance, err error) Entry {
	e := Entry{Student: s, Host: c.HostOf(s), Status: "up"}
	if err != nil {
		e.Status = "failed: " + strings.SplitN(err.Error(), "\n", 2)[0]
		return e
	}
	e.SSHPort = inst.SSHPort // on the hypervisor's loopback
	e.SSH = inst.SSHCommand()
	e.KeyFile = inst.KeyPath()
	return e
}

func writeRosters(c *Class, results []HostResult) error {
	var entries []Entry
	for _, r := range results {
		entries = append(entries, entryFor(c, r.Student, r.Instance, r.Err))
	}
	return saveRosters(c, entries)
}

// refreshRosters rewrites the rosters from the instances' records.
func refreshRosters(c *Class) error {
	var entries []Entry
	for _, s := range c.Students {
		inst, err := instance.Load(s)
		entries = append(entries, entryFor(c, s, inst, err))
	}
	return saveRosters(c, entries)
}

// saveRosters writes roster.csv, roster.json and roster.md.
func saveRosters(c *Class, entries []Entry) error {
	dir := Dir(c.Name)
	js, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	// Whole files: resets of several students (the dashboard's) rewrite
	// them at once.
	if err := fsx.WriteAtomic(filepath.Join(dir, "roster.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"student", "host", "ssh_port", "ssh", "key_file", "status"})
	for _, e := range entries {
		w.Write([]string{e.Student, e.Host, fmt.Sprint(e.SSHPort), e.SSH, e.KeyFile, e.Status})
	}
	w.Flush()
	if err := fsx.WriteAtomic(filepath.Join(dir, "roster.csv"), b.Bytes(), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Class %s\n\nImage: `%s`\n\n| student | host | log in | key | status |\n| --- | --- | --- | --- | --- |\n", c.Name, c.Image)
	for _, e := range entries {
		fmt.Fprintf(&md, "| %s | %s | `%s` | `%s` | %s |\n", e.Student, e.Host, e.SSH, e.KeyFile, e.Status)
	}
	return fsx.WriteAtomic(filepath.Join(dir, "roster.md"), []byte(md.String()), 0o644)
}
