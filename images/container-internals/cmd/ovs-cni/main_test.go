package main

import "testing"

func TestParseConf(t *testing.T) {
	c, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"pods","type":"ovs-cni","bridge":"br-pods","ipam":{"type":"host-local"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "br-pods" || c.MTU != 1500 || c.IPAM.Type != "host-local" {
		t.Fatalf("got %+v", c)
	}
	for _, bad := range []string{`{`, `{"ipam":{"type":"host-local"}}`, `{"bridge":"b"}`} {
		if _, err := parseConf([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
