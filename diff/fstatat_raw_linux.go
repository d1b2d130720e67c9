//go:build amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || 386 || arm || mips || mipsle

package diff

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lstatat is fstatat(AT_SYMLINK_NOFOLLOW) as a raw syscall (see dir): on
// these architectures the kernel fills syscall.Stat_t as it is, through
// newfstatat on 64-bit and fstatat64 on 32-bit ones.
func lstatat(fd int, name *byte, st *syscall.Stat_t) error {
	_, _, e := unix.RawSyscall6(sysFstatat, uintptr(fd), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
