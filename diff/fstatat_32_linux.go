//go:build 386 || arm || mips || mipsle

package diff

import "golang.org/x/sys/unix"

// The 32-bit ABIs' fstatat is fstatat64: syscall.Stat_t is their struct stat64.
const sysFstatat = unix.SYS_FSTATAT64
