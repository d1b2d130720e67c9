//go:build amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x

package diff

import "golang.org/x/sys/unix"

const sysFstatat = unix.SYS_NEWFSTATAT
