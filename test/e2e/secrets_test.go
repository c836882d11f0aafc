package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/provision"
)

// secret is a string that must never be found in a log, and what it is.
type secret struct{ what, text string }

// instanceSecrets lists what the instance in dir must keep to itself: its
// client key, the private host key its seed carries, and any password or
// password hash the seed gives an account. Keys are matched line by line
// of their base64 body, so a key printed whole or in part is caught.
func instanceSecrets(t *testing.T, name, dir string) []secret {
	t.Helper()
	out := []secret{{"a private key header", "PRIVATE KEY-----"}}
	key, err := os.ReadFile(filepath.Join(dir, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, pemBody("the client key id_ed25519", string(key))...)
	// The seed's user-data as the running guest received it (cloud-init
	// keeps it, root's only).
	r := labforge(t, "ssh", "-n", name, "--", "sudo cat /var/lib/cloud/instance/user-data.txt")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "#cloud-config") {
		t.Fatalf("read the seed's user-data in the guest: exit %d: %s", r.code, r.stderr)
	}
	ud := []byte(r.stdout)
	var doc any
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("seed user-data: %v", err)
	}
	return append(out, seedSecrets("user-data", "", doc)...)
}

// pemBody gives the base64 lines of a PEM block; short lines (the last
// one, padding) could match by chance and are left out.
func pemBody(what, pem string) []secret {
	var out []secret
	in := false
	for _, l := range strings.Split(pem, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "-----BEGIN "):
			in = true
		case strings.HasPrefix(l, "-----END "):
			in = false
		case in && len(l) >= 16:
			out = append(out, secret{"a line of " + what, l})
		}
	}
	return out
}

// passwordKeys are cloud-config fields that hold a password or its hash
// (users[].passwd, hashed_passwd, plain_text_passwd, chpasswd's users[].password).
var passwordKeys = map[string]bool{"passwd": true, "hashed_passwd": true, "plain_text_passwd": true, "password": true}

// seedSecrets walks the user-data document: private keys (ssh_keys'
// *_private), passwords and hashes, and chpasswd's "user:password" list.
func seedSecrets(path, key string, v any) []secret {
	var out []secret
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			out = append(out, seedSecrets(path+"."+k, k, x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, seedSecrets(path, key, x)...)
		}
	case string:
		switch {
		case strings.Contains(key, "private"):
			out = append(out, pemBody(path, v)...)
		case passwordKeys[key] && usable(v):
			out = append(out, secret{path, v})
		case key == "list" && strings.Contains(path, "chpasswd"):
			for _, l := range strings.Split(v, "\n") {
				if _, pw, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && usable(pw) {
					out = append(out, secret{path, pw})
				}
			}
		}
	}
	return out
}

// usable leaves out lock markers and values too short to find without
// false alarms ("!", "*", "RANDOM").
func usable(pw string) bool { return len(pw) >= 8 && pw != "!" && pw != "*" }

// logsOf reads the files that exist among paths, keyed by path.
func logsOf(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(data)
	}
	return out
}

// logFilesUnder lists the *.log files under dir (the console log among them).
func logFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The secret finder itself, without a VM: it must find the seed's host
// key and any password an account could be given, or the log check
// above proves nothing.
func TestSeedSecrets(t *testing.T) {
	host, err := sshx.NewKeyPair("")
	if err != nil {
		t.Fatal(err)
	}
	ud, err := provision.Seed{InstanceID: "i", Hostname: "h", User: "student", AuthorizedKey: "ssh-ed25519 AAAA",
		HostKeyPrivate: string(host.PrivatePEM), HostKeyPublic: host.AuthorizedKey}.UserData()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatal(err)
	}
	// What a seed could also carry: a hash, a plain password, chpasswd.
	doc["users"] = append(doc["users"].([]any), map[string]any{"name": "a", "hashed_passwd": "$6$salt$hash-of-pw0"})
	doc["password"] = "plaintext-pw1"
	doc["chpasswd"] = map[string]any{"list": "root:plaintext-pw2\n",
		"users": []any{map[string]any{"name": "b", "password": "plaintext-pw3"}}}
	found := seedSecrets("user-data", "", doc)
	for _, want := range []string{string(host.PrivatePEM), "$6$salt$hash-of-pw0", "plaintext-pw1", "plaintext-pw2", "plaintext-pw3"} {
		if !holdsSecret(want, found) {
			t.Errorf("not found as a secret: %q", want)
		}
	}
	if holdsSecret(host.AuthorizedKey, found) {
		t.Error("the public host key counts as a secret")
	}
}

func holdsSecret(text string, secrets []secret) bool {
	for _, s := range secrets {
		if strings.Contains(text, s.text) {
			return true
		}
	}
	return false
}
