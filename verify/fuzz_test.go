package verify

import "testing"

// FuzzParse: no suite, however malformed, panics the loader.
func FuzzParse(f *testing.F) {
	f.Add([]byte("checks:\n  - name: a\n    command: true\n"))
	f.Add([]byte("checks:\n  - name: a\n    file: /etc/x\n    mode: \"0644\"\n    selinux: etc_t\n"))
	f.Add([]byte("checks:\n  - name: p\n    port: 22\n    proto: udp\n  - name: s\n    sysctl: a.b\n    value: \"1\"\n"))
	f.Add([]byte("defaults: {timeout: 1h, interval: 0s}\nchecks: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.yaml", data)
	})
}
