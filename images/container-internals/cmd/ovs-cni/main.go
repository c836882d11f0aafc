// Command ovs-cni is a CNI plugin that attaches each pod to an Open vSwitch
// bridge: a veth pair whose host end becomes a port of the bridge, tagged
// with the pod's identity in external_ids so that students can tell pods
// apart in `ovs-vsctl show` and `ovs-ofctl dump-ports`. Addresses come
// from the IPAM plugin the configuration names (host-local).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
)

// NetConf is the plugin's configuration.
type NetConf struct {
	types.NetConf
	Bridge string `json:"bridge"`
	MTU    int    `json:"mtu"`
}

func parseConf(data []byte) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if c.Bridge == "" {
		return nil, errors.New(`network configuration: "bridge" is required`)
	}
	if c.IPAM.Type == "" {
		return nil, errors.New(`network configuration: "ipam.type" is required`)
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	return &c, nil
}

// vsctl runs ovs-vsctl with a timeout, so that a dead ovsdb-server fails
// the pod's set-up instead of hanging the kubelet.
func vsctl(args ...string) (string, error) {
	out, err := exec.Command("ovs-vsctl", append([]string{"--timeout=10"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ovs-vsctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", args.Netns, err)
	}
	defer netns.Close()

	var hostIf, contIf net.Interface
	if err := netns.Do(func(hostNS ns.NetNS) error {
		var err error
		hostIf, contIf, err = ip.SetupVeth(args.IfName, conf.MTU, "", hostNS)
		return err
	}); err != nil {
		return fmt.Errorf("create veth: %w", err)
	}
	defer func() {
		if err != nil {
			vsctl("--if-exists", "del-port", conf.Bridge, hostIf.Name)
			netns.Do(func(ns.NetNS) error { return ip.DelLinkByName(args.IfName) })
		}
	}()
	if _, err := vsctl("--may-exist", "add-port", conf.Bridge, hostIf.Name, "--",
		"set", "Interface", hostIf.Name,
		"external_ids:cni_container_id="+args.ContainerID,
		"external_ids:cni_ifname="+args.IfName,
		"external_ids:cni_netns="+args.Netns,
	); err != nil {
		return err
	}

	r, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
	if err != nil {
		return fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
	}
	defer func() {
		if err != nil {
			ipam.ExecDel(conf.IPAM.Type, args.StdinData)
		}
	}()
	result, err := current.NewResultFromResult(r)
	if err != nil {
		return err
	}
	if len(result.IPs) == 0 {
		return errors.New("ipam returned no address")
	}
	result.Interfaces = []*current.Interface{
		{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
		{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Sandbox: args.Netns},
	}
	for _, ipc := range result.IPs {
		ipc.Interface = current.Int(1)
	}
	if err := netns.Do(func(ns.NetNS) error { return ipam.ConfigureIface(args.IfName, result) }); err != nil {
		return fmt.Errorf("configure %s: %w", args.IfName, err)
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// cmdDel must succeed when things are already gone: the runtime may call
// it more than once, or after a failed ADD.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
		return fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
	}
	ports, err := vsctl("--bare", "--columns=name", "find", "Interface",
		"external_ids:cni_container_id="+args.ContainerID, "external_ids:cni_ifname="+args.IfName)
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(ports) {
		if _, err := vsctl("--if-exists", "del-port", conf.Bridge, p); err != nil {
			return err
		}
	}
	if args.Netns == "" {
		return nil
	}
	// Deleting the pod's end deletes the pair.
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		if err := ip.DelLinkByName(args.IfName); err != nil && !errors.Is(err, ip.ErrLinkNotFound) {
			return err
		}
		return nil
	})
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ports, err := vsctl("--bare", "--columns=name", "find", "Interface", "external_ids:cni_container_id="+args.ContainerID)
	if err != nil {
		return err
	}
	if ports == "" {
		return fmt.Errorf("container %s has no port on %s", args.ContainerID, conf.Bridge)
	}
	return ipam.ExecCheck(conf.IPAM.Type, args.StdinData)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck},
		version.All, "ovs-cni: attaches pods to an Open vSwitch bridge")
}
