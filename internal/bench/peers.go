package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/provision"
)

// Peers runs labforge and its peers on the same work, in one run, and
// keeps every run's log in Dir:
//
//  1. rebuild after changing the last step: labforge (layer cache) vs
//     Packer's QEMU builder (same base disk, same step scripts, same seal);
//  2. boot to SSH-ready: labforge up vs vagrant up of the exported box, with
//     each guest's own systemd-analyze;
//  3. N checks on a running host: labforge verify vs one ssh per check;
//  4. a class: linked clones (labforge class create) vs full copies;
//  5. the exported image: labforge image export vs Packer's output.
//
// labforge runs as a program (Self), as a user would run it; its figures
// come from its --progress-json results.
type Peers struct {
	Self     string // the labforge binary
	Dir      string
	Students int
	Checks   int
	spec     string // the bench spec, copied into Dir
	rows     []benchRow
}

// benchRow is one line of the table: labforge's figure against the peer's.
type benchRow struct {
	measure, ours, peer, peerTool string
	ratio                         float64 // ours / peer; 0 when not a ratio
}

// Run measures the spec at specPath and prints the table (also written
// to Dir as table.md).
func (b *Peers) Run(ctx context.Context, out io.Writer, specPath string) error {
	for _, tool := range []string{"packer", "vagrant", "ssh", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("bench peers needs %s (Debian: apt-get install packer vagrant vagrant-libvirt dnsmasq-base)", tool)
		}
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench peers: logs in %s\n", b.Dir)
	// A private copy of the spec: the rebuild measure edits its last step.
	specDir := filepath.Join(b.Dir, "spec")
	if err := os.CopyFS(specDir, os.DirFS(filepath.Dir(specPath))); err != nil {
		return err
	}
	b.spec = filepath.Join(specDir, filepath.Base(specPath))
	spec, err := images.Load(b.spec)
	if err != nil {
		return err
	}
	if len(spec.Provision) == 0 {
		return fmt.Errorf("%s has no provisioning steps", specPath)
	}

	steps := []struct {
		name string
		fn   func(context.Context, *images.Spec) error
	}{
		{"rebuild", b.rebuild},
		{"boot", b.boot},
		{"class", b.class},
	}
	for _, s := range steps {
		fmt.Fprintf(out, "==> %s\n", s.name)
		if err := s.fn(ctx, spec); err != nil {
			return fmt.Errorf("bench peers: %s: %w", s.name, err)
		}
	}
	return b.table(out, spec)
}

// exec runs a command with its output in dir/log and returns its time.
func (b *Peers) exec(ctx context.Context, log string, env []string, name string, args ...string) (time.Duration, string, error) {
	f, err := os.OpenFile(filepath.Join(b.Dir, log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s %s\n", name, strings.Join(args, " "))
	var buf strings.Builder
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), env...)
	c.Stdout, c.Stderr = io.MultiWriter(f, &buf), io.MultiWriter(f, &buf)
	t0 := time.Now()
	err = c.Run()
	took := time.Since(t0)
	fmt.Fprintf(f, "# %s, %v\n", took.Round(time.Millisecond), err)
	if err != nil {
		return took, buf.String(), fmt.Errorf("%s %s: %w (log %s)", name, strings.Join(args, " "), err, filepath.Join(b.Dir, log))
	}
	return took, buf.String(), nil
}

func (b *Peers) labforge(ctx context.Context, log string, args ...string) (time.Duration, string, error) {
	return b.exec(ctx, log, nil, b.Self, args...)
}

func (b *Peers) add(measure, ours, peer, tool string, ratio float64) {
	b.rows = append(b.rows, benchRow{measure, ours, peer, tool, ratio})
}

// rebuild: labforge's layer cache against Packer's full rebuild, after the
// same change to the last step. Also measure 5, the exported image.
func (b *Peers) rebuild(ctx context.Context, spec *images.Spec) error {
	if _, _, err := b.labforge(ctx, "labforge-build.log", "build", b.spec); err != nil {
		return err
	}
	last := &spec.Provision[len(spec.Provision)-1]
	last.Run += fmt.Sprintf("\n# bench %d\n", time.Now().UnixNano())
	if err := rewriteLastStep(b.spec, last.Run); err != nil {
		return err
	}
	ours, _, err := b.labforge(ctx, "labforge-build.log", "build", b.spec)
	if err != nil {
		return err
	}

	base, err := baseDisk(ctx, spec)
	if err != nil {
		return err
	}
	tmpl, err := b.packerTemplate(spec, base)
	if err != nil {
		return err
	}
	peer, _, err := b.exec(ctx, "packer.log", []string{"PACKER_LOG=1", "CHECKPOINT_DISABLE=1", "PACKER_CACHE_DIR=" + filepath.Join(b.Dir, "packer", "cache")}, "packer", "build", "-color=false", tmpl)
	if err != nil {
		return err
	}
	b.add("rebuild after changing the last step", fmtDur(ours), fmtDur(peer), "Packer 1.6 QEMU builder (full build)", ours.Seconds()/peer.Seconds())

	// 5. The exported image of the same content.
	if _, _, err := b.labforge(ctx, "labforge-export.log", "image", "export", b.spec, "-o", filepath.Join(b.Dir, "export")); err != nil {
		return err
	}
	ourSize, err := fileSize(filepath.Join(b.Dir, "export", spec.Name+".qcow2"))
	if err != nil {
		return err
	}
	peerSize, err := fileSize(filepath.Join(b.Dir, "packer", "output", spec.Name+".qcow2"))
	if err != nil {
		return err
	}
	b.add("exported image, same content", progress.Bytes(ourSize), progress.Bytes(peerSize), "Packer output (disk_compression)", float64(ourSize)/float64(peerSize))
	return nil
}

// rewriteLastStep puts run into the spec file as its last step's script, so
// that the CLI builds what this process changed. The file's comments and
// order stay.
func rewriteLastStep(specPath, run string) error {
	data, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	var runNode *yaml.Node
	if len(doc.Content) == 1 {
		top := doc.Content[0]
		for i := 0; i+1 < len(top.Content); i += 2 {
			if steps := top.Content[i+1]; top.Content[i].Value == "provision" && len(steps.Content) > 0 {
				last := steps.Content[len(steps.Content)-1]
				for j := 0; j+1 < len(last.Content); j += 2 {
					if last.Content[j].Value == "run" {
						runNode = last.Content[j+1]
					}
				}
			}
		}
	}
	if runNode == nil {
		return fmt.Errorf("%s: no run in the last provision step", specPath)
	}
	runNode.Value, runNode.Style = run, yaml.LiteralStyle
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return err
	}
	return os.WriteFile(specPath, out, 0o644)
}

// baseDisk is the spec's disk before provisioning: what Packer starts from.
func baseDisk(ctx context.Context, spec *images.Spec) (string, error) {
	bare := *spec
	bare.Provision = nil
	res, err := builder.Build(ctx, &bare, builder.Options{CacheDir: paths.Cache()})
	if err != nil {
		return "", err
	}
	return res.Image, nil
}

// packerTemplate writes a Packer JSON template doing what labforge does:
// boot the base disk under QEMU with a NoCloud seed, upload the steps'
// files, run each step as root, then seal with labforge's own seal script.
func (b *Peers) packerTemplate(spec *images.Spec, base string) (string, error) {
	dir := filepath.Join(b.Dir, "packer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	key, err := sshx.NewKeyPair("packer-bench")
	if err != nil {
		return "", err
	}
	keyPath := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyPath, key.PrivatePEM, 0o600); err != nil {
		return "", err
	}
	host, err := sshx.NewKeyPair("")
	if err != nil {
		return "", err
	}
	seed := provision.Seed{
		InstanceID: fmt.Sprintf("packer-bench-%d", time.Now().UnixNano()), Hostname: "packer-bench",
		User: "packer", AuthorizedKey: key.AuthorizedKey,
		HostKeyPrivate: string(host.PrivatePEM), HostKeyPublic: host.AuthorizedKey,
	}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := seed.WriteISO(seedPath); err != nil {
		return "", err
	}
	sealPath := filepath.Join(dir, "seal.sh")
	if err := os.WriteFile(sealPath, []byte(builder.SealScript()), 0o755); err != nil {
		return "", err
	}
	specDir := filepath.Dir(b.spec)
	provisioners := []map[string]any{
		{"type": "shell", "inline": []string{"mkdir -p /tmp/labforge"}},
	}
	for _, st := range spec.Provision {
		for _, f := range st.Files {
			provisioners = append(provisioners,
				map[string]any{"type": "shell", "inline": []string{"mkdir -p /tmp/labforge/" + filepath.Dir(f)}},
				map[string]any{"type": "file", "source": filepath.Join(specDir, f), "destination": "/tmp/labforge/" + f})
		}
	}
	for i, st := range spec.Provision {
		script := filepath.Join(dir, fmt.Sprintf("step-%d-%s.sh", i+1, st.Name))
		if err := os.WriteFile(script, []byte("set -eu\n"+st.Run), 0o644); err != nil {
			return "", err
		}
		provisioners = append(provisioners, map[string]any{
			"type": "shell", "script": script,
			"execute_command": "cd /tmp/labforge && sudo -n sh {{.Path}}",
		})
	}
	provisioners = append(provisioners, map[string]any{"type": "file", "source": sealPath, "destination": "/tmp/.labforge-seal.sh"})
	mem, cpus := int64(spec.VM.Memory)>>20, spec.VM.CPUs
	tmpl := map[string]any{
		"builders": []map[string]any{{
			"type":             "qemu",
			"vm_name":          spec.Name + ".qcow2",
			"output_directory": filepath.Join(dir, "output"),
			"disk_image":       true,
			"iso_url":          base,
			"iso_checksum":     "none",
			"format":           "qcow2",
			"disk_compression": true,
			"accelerator":      "tcg",
			"machine_type":     "q35",
			"cpus":             cpus,
			"memory":           mem,
			"headless":         true,
			"disk_interface":   "virtio",
			"net_device":       "virtio-net",
			// Packer 1.6 has no firmware option: OVMF goes in as the BIOS image.
			// The seed is a virtio-scsi CD, as labforge attaches it: Debian's
			// cloud kernel has no AHCI driver for -cdrom. (-blockdev, not
			// -drive, which would make Packer drop its own disk.)
			"qemuargs": [][]string{
				{"-cpu", "max"}, {"-bios", "/usr/share/ovmf/OVMF.fd"},
				{"-blockdev", "driver=file,filename=" + seedPath + ",node-name=seed,read-only=on"},
				{"-device", "virtio-scsi-pci,id=scsi0"}, {"-device", "scsi-cd,bus=scsi0.0,drive=seed"},
			},
			"ssh_username":         "packer",
			"ssh_private_key_file": keyPath,
			"ssh_timeout":          "30m",
			// labforge's seal, which ends by powering the guest off.
			"shutdown_command": "sudo -n sh /tmp/.labforge-seal.sh packer",
			"shutdown_timeout": "10m",
		}},
		"provisioners": provisioners,
	}
	data, err := json.MarshalIndent(tmpl, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "template.json")
	os.RemoveAll(filepath.Join(dir, "output")) // Packer refuses an existing output directory
	return path, os.WriteFile(path, data, 0o644)
}

// resultNumber reads a number from the result event that ends a labforge
// command's --progress-json output.
func resultNumber(out, key string) (float64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var e progress.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || e.Event != "result" {
		return 0, fmt.Errorf("no result event at the end of its output")
	}
	v, ok := e.Result[key].(float64)
	if !ok {
		return 0, fmt.Errorf("its result has no %s", key)
	}
	return v, nil
}

// resultSeconds is resultNumber for a time in seconds.
func resultSeconds(out, key string) (time.Duration, error) {
	v, err := resultNumber(out, key)
	return time.Duration(v * float64(time.Second)), err
}

// boot: labforge up against vagrant up of the same image, each guest's own
// boot time beside it; measure 3 runs on the labforge guest before it goes
// down, so that Vagrant boots alone.
func (b *Peers) boot(ctx context.Context, spec *images.Spec) error {
	const name = "bench-peers"
	b.labforge(ctx, "labforge-up.log", "down", name) //nolint:errcheck // nothing to stop is fine
	defer b.labforge(context.WithoutCancel(ctx), "labforge-up.log", "down", name)
	// From cold, as Vagrant boots; the restored host comes after.
	_, out, err := b.labforge(ctx, "labforge-up.log", "up", b.spec, "-n", name, "--no-verify", "--cold", "--progress-json")
	if err != nil {
		return err
	}
	ready, err := resultSeconds(out, "sshReadySeconds")
	if err != nil {
		return fmt.Errorf("up: %w (log %s)", err, filepath.Join(b.Dir, "labforge-up.log"))
	}
	_, ourGuest, err := b.labforge(ctx, "labforge-up.log", "ssh", "-n", name, "--", "systemctl is-system-running --wait >/dev/null; systemd-analyze")
	if err != nil {
		return err
	}

	// 3. Checks on the running labforge guest, against an ssh per check.
	inst, err := instance.Load(name)
	if err != nil {
		return err
	}
	suite, err := benchSuite(b.Checks)
	if err != nil {
		return err
	}
	vt, err := measureVerify(ctx, inst, suite, filepath.Join(b.Dir, "ssh-loop.log"))
	if err != nil {
		return err
	}
	b.add(fmt.Sprintf("%d checks on a running host", b.Checks), fmtDur(vt.batch), fmtDur(vt.peer), "ssh host cmd, one per check", vt.batch.Seconds()/vt.peer.Seconds())
	if _, _, err := b.labforge(ctx, "labforge-up.log", "down", name); err != nil {
		return err
	}
	// Restored from the image's warm state (made now, untimed, if it has none).
	_, out, err = b.labforge(ctx, "labforge-up.log", "up", b.spec, "-n", name, "--no-verify", "--progress-json")
	if err != nil {
		return err
	}
	readyWarm, err := resultSeconds(out, "sshReadySeconds")
	if err != nil {
		return fmt.Errorf("up: %w (log %s)", err, filepath.Join(b.Dir, "labforge-up.log"))
	}
	// Vagrant boots with no other guest running.
	if _, _, err := b.labforge(ctx, "labforge-up.log", "down", name); err != nil {
		return err
	}

	// The peer: the same image as a Vagrant box, booted by vagrant-libvirt.
	box := filepath.Join(b.Dir, "vagrant", spec.Name+".box")
	boxName := "labforge-bench/" + spec.Name
	if _, _, err := b.labforge(ctx, "labforge-box.log", "box", "export", b.spec, "-o", box, "--name", boxName); err != nil {
		return err
	}
	vdir := filepath.Join(b.Dir, "vagrant")
	vagrantfile := fmt.Sprintf(`Vagrant.configure("2") do |config|
  config.vm.box = %q
  config.ssh.insert_key = true
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.driver = %q
  end
end
`, boxName, vagrantDriver())
	if err := os.WriteFile(filepath.Join(vdir, "Vagrantfile"), []byte(vagrantfile), 0o644); err != nil {
		return err
	}
	env := []string{"VAGRANT_CWD=" + vdir, "VAGRANT_HOME=" + filepath.Join(vdir, "home"), "VAGRANT_DEFAULT_PROVIDER=libvirt"}
	defer b.vagrantCleanup(context.WithoutCancel(ctx), env, boxName)
	if _, _, err := b.exec(ctx, "vagrant.log", env, "vagrant", "box", "add", "--force", "--name", boxName, box); err != nil {
		return err
	}
	peer, _, err := b.exec(ctx, "vagrant.log", env, "vagrant", "up", "--provider=libvirt")
	if err != nil {
		return err
	}
	_, peerGuest, err := b.exec(ctx, "vagrant.log", env, "vagrant", "ssh", "-c", "systemctl is-system-running --wait >/dev/null; systemd-analyze")
	if err != nil {
		return err
	}
	b.add("boot to SSH-ready", fmtDur(ready), fmtDur(peer), "vagrant up (vagrant-libvirt, "+vagrantDriver()+")", ready.Seconds()/peer.Seconds())
	b.add("  restored from the warm state, own identity", fmtDur(readyWarm), fmtDur(peer), "vagrant up (vagrant-libvirt, "+vagrantDriver()+")", readyWarm.Seconds()/peer.Seconds())
	og, pg := guestBoot(ourGuest), guestBoot(peerGuest)
	b.add("  the guest's own boot (systemd-analyze)", og, pg, "the same image under Vagrant", spanRatio(og, pg))
	if _, _, err := b.exec(ctx, "vagrant.log", env, "vagrant", "destroy", "-f"); err != nil {
		return err
	}

	return nil
}

func (b *Peers) vagrantCleanup(ctx context.Context, env []string, boxName string) {
	b.exec(ctx, "vagrant.log", env, "vagrant", "destroy", "-f")                              //nolint:errcheck
	b.exec(ctx, "vagrant.log", env, "vagrant", "box", "remove", "--force", "--all", boxName) //nolint:errcheck
	// vagrant-libvirt keeps the box's disk in the default pool.
	out, _ := exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "vol-list", "default").Output()
	prefix := strings.ReplaceAll(boxName, "/", "-VAGRANTSLASH-")
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, prefix) {
			exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default", f).Run() //nolint:errcheck
		}
	}
}

func vagrantDriver() string {
	if d := os.Getenv("LABFORGE_VAGRANT_DRIVER"); d != "" {
		return d
	}
	return "qemu" // KVM does not run guests on the machines labforge is measured on
}

var guestBootRE = regexp.MustCompile(`= ([0-9a-z. ]+?)\s*$`)

// spanRatio divides two systemd time spans ("1min 43.423s"), 0 if either
// does not parse.
func spanRatio(a, b string) float64 {
	parse := func(s string) time.Duration {
		d, err := time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(s, "min", "m"), " ", ""))
		if err != nil {
			return 0
		}
		return d
	}
	da, db := parse(a), parse(b)
	if da == 0 || db == 0 {
		return 0
	}
	return da.Seconds() / db.Seconds()
}

// guestBoot picks the total from systemd-analyze's first line.
func guestBoot(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Startup finished") {
			if m := guestBootRE.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
				return m[1]
			}
		}
	}
	return "?"
}

// class: N linked clones booted by labforge against N full copies of the
// golden image (made, not booted: the copy is the cost that differs).
func (b *Peers) class(ctx context.Context, spec *images.Spec) error {
	const name = "bench-peers"
	b.labforge(ctx, "labforge-class.log", "class", "destroy", name) //nolint:errcheck
	defer b.labforge(context.WithoutCancel(ctx), "labforge-class.log", "class", "destroy", name)
	n := fmt.Sprint(b.Students)
	_, out, err := b.labforge(ctx, "labforge-class.log", "class", "create", name, "--spec", b.spec, "--students", n, "--parallel", n, "--boot-timeout", "45m", "--progress-json")
	if err != nil {
		return err
	}
	took, err := resultSeconds(out, "seconds")
	if err != nil {
		return fmt.Errorf("class create: %w (log %s)", err, filepath.Join(b.Dir, "labforge-class.log"))
	}
	clones, err := resultNumber(out, "cloneBytes")
	if err != nil {
		return fmt.Errorf("class create: %w (log %s)", err, filepath.Join(b.Dir, "labforge-class.log"))
	}
	golden, err := builder.Build(ctx, spec, builder.Options{CacheDir: paths.Cache()})
	if err != nil {
		return err
	}
	copies := filepath.Join(b.Dir, "full-copies")
	if err := os.MkdirAll(copies, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(copies)
	t0 := time.Now()
	var total int64
	for i := 1; i <= b.Students; i++ {
		dst := filepath.Join(copies, fmt.Sprintf("s%02d.qcow2", i))
		if _, _, err := b.exec(ctx, "full-copies.log", nil, "qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", golden.Image, dst); err != nil {
			return err
		}
		total += fsx.Allocated(dst)
	}
	copyTook := time.Since(t0)
	b.add(fmt.Sprintf("class of %d: disk of the clones", b.Students), progress.Bytes(int64(clones)), progress.Bytes(total), "full copies (qemu-img convert)", 0)
	b.add(fmt.Sprintf("class of %d: creation", b.Students), fmtDur(took)+" (booted)", fmtDur(copyTook)+" (copies only, not booted)", "full copies (qemu-img convert)", 0)
	return nil
}

func (b *Peers) table(out io.Writer, spec *images.Spec) error {
	var md strings.Builder
	fmt.Fprintf(&md, "labforge bench peers, %s, %s (%s): %s\n\n", time.Now().Format("2006-01-02"), hostSummary(), kernelRelease(), spec.Name)
	md.WriteString("| measure | labforge | peer | peer tool | labforge / peer |\n| --- | --- | --- | --- | --- |\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tLABFORGE\tPEER\tPEER TOOL\tRATIO")
	for _, r := range b.rows {
		ratio := "-"
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.measure, r.ours, r.peer, r.peerTool, ratio)
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s |\n", strings.TrimSpace(r.measure), r.ours, r.peer, r.peerTool, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "logs and table.md: %s\n", b.Dir)
	return os.WriteFile(filepath.Join(b.Dir, "table.md"), []byte(md.String()), 0o644)
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return "Linux " + strings.TrimSpace(string(data))
}

func fmtDur(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func fileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
