package class

import "syscall"

// allocated is the space a (sparse) file really takes on the host.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return -1
	}
	return st.Blocks * 512
}
