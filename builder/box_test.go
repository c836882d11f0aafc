package builder

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExportBox makes a small labforge-shaped disk (GPT, ESP, ext4 root
// holding labforge's cloud-init file, labelled), exports it as a box and
// reads the box back: its three files, the metadata, the Vagrantfile, and
// the vagrant account written into box.img with the sibling's label.
func TestExportBox(t *testing.T) {
	for _, tool := range []string{"qemu-img", "debugfs", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	cfgDir := filepath.Join(tree, "etc/cloud/cloud.cfg.d")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "90-labforge.cfg"), []byte("datasource_list: [NoCloud, None]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "disk.raw")
	const size = 320 << 20
	if err := makeRawDisk(ctx, raw, size, idsFor("box-test"), tree, nil, nil); err != nil {
		t.Fatal(err)
	}
	off, err := rootOffset(raw)
	if err != nil {
		t.Fatal(err)
	}
	dev := raw + "?offset=" + strconv.FormatInt(off, 10)
	const label = "system_u:object_r:etc_t:s0"
	if _, err := debugfs(ctx, dev, true, "ea_set "+labelFrom+" security.selinux "+label); err != nil {
		t.Fatal(err)
	}
	// The image as builds leave it: a qcow2 with a backing chain.
	base := filepath.Join(dir, "base.qcow2")
	image := filepath.Join(dir, "image.qcow2")
	mustRun(t, "qemu-img", "convert", "-O", "qcow2", raw, base)
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, image)

	out := filepath.Join(dir, "dist", "test.box")
	opts := BoxOptions{Name: "labforge/test", MemoryMiB: 3072, CPUs: 3, Loaders: []string{"/a/OVMF_CODE_4M.fd", "/b/OVMF_CODE.fd"}, Created: time.Unix(1700000000, 0)}
	box, err := ExportBox(ctx, image, out, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if box.VirtualSize != size || box.Bytes <= box.ImageBytes {
		t.Fatalf("box %+v: virtual size must be %d, the box larger than its disk", box, size)
	}

	files := readTar(t, out)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	if len(files) != 3 || files["metadata.json"] == nil || files["Vagrantfile"] == nil || files["box.img"] == nil {
		t.Fatalf("box holds %v, want metadata.json, Vagrantfile, box.img", names)
	}
	var meta map[string]any
	if err := json.Unmarshal(files["metadata.json"], &meta); err != nil {
		t.Fatal(err)
	}
	// 320 MiB rounds up to 1 GiB: vagrant-libvirt counts whole GiB.
	if meta["provider"] != "libvirt" || meta["format"] != "qcow2" || meta["virtual_size"] != float64(1) || len(meta) != 3 {
		t.Fatalf("metadata.json: %s", files["metadata.json"])
	}
	vf := string(files["Vagrantfile"])
	for _, want := range []string{"lv.memory = 3072", "lv.cpus = 3", `"/a/OVMF_CODE_4M.fd", "/b/OVMF_CODE.fd"`, "lv.loader = loader", "lv.nvram = nvram", `ENV["LABFORGE_OVMF"]`, `machine_type = "q35"`, "insert_key = true"} {
		if !strings.Contains(vf, want) {
			t.Errorf("Vagrantfile lacks %q:\n%s", want, vf)
		}
	}
	if ruby, err := exec.LookPath("ruby"); err == nil {
		cmd := exec.Command(ruby, "-c")
		cmd.Stdin = strings.NewReader(vf)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("Vagrantfile is not valid Ruby: %v: %s", err, o)
		}
	}

	img := filepath.Join(dir, "box.img")
	if err := os.WriteFile(img, files["box.img"], 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command("qemu-img", "info", "--output=json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var qi map[string]any
	if err := json.Unmarshal(info, &qi); err != nil {
		t.Fatal(err)
	}
	if qi["format"] != "qcow2" || qi["virtual-size"] != float64(size) || qi["backing-filename"] != nil {
		t.Fatalf("box.img must be a standalone qcow2 of %d bytes: %s", size, info)
	}
	back := filepath.Join(dir, "back.raw")
	mustRun(t, "qemu-img", "convert", "-O", "raw", img, back)
	bdev := back + "?offset=" + strconv.FormatInt(off, 10)
	got := filepath.Join(dir, "got.cfg")
	if _, err := debugfs(ctx, bdev, false, "dump "+vagrantCloudCfg+" "+got); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(got)
	if !strings.Contains(string(cfg), "name: vagrant") || !strings.Contains(string(cfg), vagrantInsecureKey) {
		t.Fatalf("box.img's %s:\n%s", vagrantCloudCfg, cfg)
	}
	lbl := filepath.Join(dir, "label")
	if _, err := debugfs(ctx, bdev, false, "ea_get -f "+lbl+" "+vagrantCloudCfg+" security.selinux"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(lbl); string(b) != label {
		t.Fatalf("label %q, want %q", b, label)
	}
	stat, _ := debugfs(ctx, bdev, false, "stat "+vagrantCloudCfg)
	if !strings.Contains(stat, "Mode:  0644") || !strings.Contains(stat, "User:     0") {
		t.Fatalf("owner and mode:\n%s", stat)
	}
	// The image itself stays without the account.
	if _, err := debugfs(ctx, dev, false, "stat "+vagrantCloudCfg); err == nil {
		t.Fatal("export changed the image")
	}
	// A second export over the first gives the same box.
	box2, err := ExportBox(ctx, image, out, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if box2.Bytes != box.Bytes {
		t.Errorf("re-export: %d bytes, first %d", box2.Bytes, box.Bytes)
	}
}

func TestExportBoxRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, err := ExportBox(ctx, filepath.Join(dir, "x.qcow2"), filepath.Join(dir, "x.box"), dir, BoxOptions{Name: "x", MemoryMiB: 0, CPUs: 1, Loaders: []string{"/f"}})
	if err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("zero memory: %v", err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	// A disk that is not a labforge disk is refused by name.
	img := filepath.Join(dir, "blank.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	_, err = ExportBox(ctx, img, filepath.Join(dir, "x.box"), dir, BoxOptions{Name: "x", MemoryMiB: 512, CPUs: 1, Loaders: []string{"/f"}})
	if err == nil || !strings.Contains(err.Error(), img) {
		t.Fatalf("blank disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.box")); !os.IsNotExist(err) {
		t.Fatal("a failed export left a box behind")
	}
	// Nor the directory it made for the box.
	_, err = ExportBox(ctx, img, filepath.Join(dir, "dist", "sub", "x.box"), dir, BoxOptions{Name: "x", MemoryMiB: 512, CPUs: 1, Loaders: []string{"/f"}})
	if err == nil {
		t.Fatal("blank disk exported")
	}
	if _, err := os.Stat(filepath.Join(dir, "dist")); !os.IsNotExist(err) {
		t.Fatal("a failed export left an empty dist/ behind")
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}
