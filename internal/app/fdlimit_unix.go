//go:build unix

package app

import "syscall"

// openFileLimit is the process's limit on open files (the soft one, which
// Go raised to the hard one when the program started).
func openFileLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return uint64(l.Cur), true // int64 on some systems
}
