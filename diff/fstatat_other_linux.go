//go:build !(amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || 386 || arm || mips || mipsle)

package diff

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// lstatat goes through the syscall package where the kernel's struct stat is
// not syscall.Stat_t (mips64 converts it; loong64 had only statx before
// Linux 6.11): slower, but right.
func lstatat(fd int, name *byte, st *syscall.Stat_t) error {
	return syscall.Fstatat(fd, unix.BytePtrToString(name), st, unix.AT_SYMLINK_NOFOLLOW)
}
