//go:build unix

package main

import "syscall"

// openFileLimit is the soft limit on this process's open files. (Go
// raises it to the hard limit when a program starts.)
func openFileLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return uint64(l.Cur), true // int64 on some systems
}
