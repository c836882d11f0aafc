package virt

import (
	"fmt"
	"os"
)

// Firmware is a UEFI code image and the template for its variable store.
type Firmware struct {
	Code, Vars string
}

// firmwares lists where distributions install OVMF without Secure Boot,
// which the unsigned systemd-boot on labforge disks needs.
var firmwares = []Firmware{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},           // Debian, Ubuntu
	{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},       // Fedora, RHEL
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},                 // older Debian
	{"/usr/share/qemu/ovmf-x86_64-code.bin", "/usr/share/qemu/ovmf-x86_64-vars.bin"}, // openSUSE
}

// FindFirmware returns the first OVMF installed on the host.
func FindFirmware() (Firmware, error) {
	for _, f := range firmwares {
		if exists(f.Code) && exists(f.Vars) {
			return f, nil
		}
	}
	return Firmware{}, fmt.Errorf("no UEFI firmware found (Debian: apt-get install ovmf; Fedora: dnf install edk2-ovmf)")
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Firmwares lists the UEFI firmware locations labforge knows, in the order
// it tries them (for configurations that look on another host, such as a
// box's Vagrantfile).
func Firmwares() []Firmware { return append([]Firmware(nil), firmwares...) }
