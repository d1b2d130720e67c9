package diff

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"snap/internal/fdpath"
)

// The tree being committed is hostile: a container that is not paused (or
// any process racing on a rootfs) can swap a directory for a symlink to /
// between the walk seeing it and the writer reading it (renameat2 with
// RENAME_EXCHANGE). Nothing in it is therefore opened by path. The walk keeps
// an fd of the tree's root; every path in it is opened beneath that fd with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS), and what
// got opened is checked against what the walk saw (dev, inode, type, size).
// A mismatch fails the commit with ErrChanged: an error is acceptable under
// attack, a host file in the layer never is. The lowers (the store's own
// layer dirs, docker's layer dirs) are not raced and are read by path.

// ErrChanged is wrapped by errors about a path that changed between the walk
// seeing it and the layer writer reading it.
var ErrChanged = errors.New("changed during the commit")

func changedErr(cause error) error {
	if cause == nil {
		return ErrChanged
	}
	return fmt.Errorf("%w (%w)", ErrChanged, cause)
}

// raceErrno reports errors that mean the entry is no longer what the walk
// saw: gone, replaced by a symlink or by another type, or moved while the
// kernel resolved it.
func raceErrno(err error) bool {
	for _, e := range []error{unix.ENOENT, unix.ELOOP, unix.ENOTDIR, unix.EXDEV, unix.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// tree is an open root of the hostile tree. Changes carry it so that the
// layer writer can open their content beneath the same root after the walk
// has moved on. It is reference-counted: the walk holds one reference while
// it runs and the writer one per change in flight; the fd closes with the
// last.
type tree struct {
	path string // for messages only
	fd   int
	refs atomic.Int64
}

// openTree opens root (following it: the caller named it) with one reference.
//
// Where it may (root, Linux 5.2+), the tree is a private clone of the mount
// that holds root, without the mounts beneath it (open_tree with
// OPEN_TREE_CLONE, not AT_RECURSIVE): a rootfs used as a chroot has /proc,
// /sys, /dev or a host file bound in it, and docker never puts a mount's
// content in a layer. The clone shows what is on disk under those mount
// points, and it goes away with the last fd. Without the privilege the root
// is opened as it is, mounts and all.
func openTree(root string) (*tree, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, root, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		fd, err = unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	t := &tree{path: root, fd: fd}
	t.refs.Store(1)
	return t, nil
}

// acquire takes a reference; false once the fd is closed.
func (t *tree) acquire() bool {
	for {
		n := t.refs.Load()
		if n <= 0 {
			return false
		}
		if t.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (t *tree) release() {
	if t.refs.Add(-1) == 0 {
		unix.Close(t.fd)
	}
}

func (t *tree) abs(rel string) string {
	return filepath.Join(t.path, rel)
}

var noOpenat2 atomic.Bool

// openBeneath opens rel beneath dirfd without following any symlink, on any
// component; flags get O_NOFOLLOW|O_CLOEXEC.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		for tries := 0; ; tries++ {
			fd, err := unix.Openat2(dirfd, rel, &how)
			// EAGAIN: a rename ran during the lookup, which the kernel
			// cannot then prove stayed beneath the root; look up again.
			if err == unix.EINTR || (err == unix.EAGAIN && tries < 16) {
				continue
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	return openComponents(dirfd, rel, flags)
}

// openComponents is openBeneath for kernels without openat2 (before 5.6):
// one openat per component, each refusing a symlink.
func openComponents(dirfd int, rel string, flags int) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	parts := strings.Split(rel, "/")
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for i, p := range parts {
		if p == "" || p == ".." || (p == "." && len(parts) > 1) {
			return -1, unix.EXDEV
		}
		if i == len(parts)-1 {
			return unix.Openat(cur, p, flags, 0)
		}
		next, err := unix.Openat(cur, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = next
	}
	return -1, unix.ENOENT
}

// sameEntry reports whether got is the entry the walk saw: same inode and
// type. The size may differ: a file a running container appends to is read
// up to the size the walk listed, as the tar header says (the inode is what
// keeps a host file out, not the size).
func sameEntry(got, saw *syscall.Stat_t) bool {
	return got.Dev == saw.Dev && got.Ino == saw.Ino && got.Mode&syscall.S_IFMT == saw.Mode&syscall.S_IFMT
}

// openRegular turns pathfd (an O_PATH fd, which opens nothing: no device
// driver's open runs, no fifo blocks, no lease breaks) into a readable fd,
// once fstat has shown it is a regular file and, with saw set, the one the
// walk listed. The reopen goes through /proc/self/fd, so it is that same
// file whatever has been renamed since. pathfd is closed.
func openRegular(pathfd int, saw *syscall.Stat_t, noatime bool) (int, error) {
	defer unix.Close(pathfd)
	var got syscall.Stat_t
	if err := syscall.Fstat(pathfd, &got); err != nil {
		return -1, err
	}
	if got.Mode&syscall.S_IFMT != syscall.S_IFREG || (saw != nil && !sameEntry(&got, saw)) {
		return -1, changedErr(nil)
	}
	proc := "/proc/self/fd/" + strconv.Itoa(pathfd)
	flags := unix.O_RDONLY | unix.O_NOCTTY | unix.O_CLOEXEC
	if noatime {
		// With relatime, the first read of a file unpacked from a tar
		// (atime = mtime) would otherwise write its inode; O_NOATIME needs
		// the owner or CAP_FOWNER.
		if fd, err := unix.Open(proc, flags|unix.O_NOATIME, 0); err != unix.EPERM {
			return fd, err
		}
	}
	return unix.Open(proc, flags, 0)
}

// checkFD fstats fd and compares it with what the walk saw; it closes fd
// when they differ.
func checkFD(fd int, saw *syscall.Stat_t) error {
	if saw == nil {
		return nil
	}
	var got syscall.Stat_t
	if err := syscall.Fstat(fd, &got); err != nil {
		unix.Close(fd)
		return err
	}
	if !sameEntry(&got, saw) {
		unix.Close(fd)
		return changedErr(nil)
	}
	return nil
}

// openDir opens the directory rel beneath the root; saw, if set, is the stat
// the walk saw for it.
func (t *tree) openDir(rel string, saw *syscall.Stat_t) (*dir, error) {
	fd, err := openBeneath(t.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if raceErrno(err) && rel != "" {
			err = changedErr(err)
		}
		return nil, &fs.PathError{Op: "open", Path: t.abs(rel), Err: err}
	}
	if err := checkFD(fd, saw); err != nil {
		return nil, &fs.PathError{Op: "open", Path: t.abs(rel), Err: err}
	}
	return &dir{path: t.abs(rel), fd: fd}, nil
}

// openFile opens the regular file rel for reading and checks that it is
// the one the walk saw; a device or fifo swapped in is never opened.
func (t *tree) openFile(rel string, saw *syscall.Stat_t) (int, error) {
	fd, err := openBeneath(t.fd, rel, unix.O_PATH)
	if err != nil {
		if raceErrno(err) {
			return -1, changedErr(err)
		}
		return -1, err
	}
	return openRegular(fd, saw, false)
}

// readlink reads the target of the symlink rel, checked against saw.
func (t *tree) readlink(rel string, saw *syscall.Stat_t) (string, error) {
	fd, err := openBeneath(t.fd, rel, unix.O_PATH)
	if err != nil {
		if raceErrno(err) {
			return "", changedErr(err)
		}
		return "", err
	}
	if err := checkFD(fd, saw); err != nil {
		return "", err
	}
	defer unix.Close(fd)
	target, err := fdpath.Readlink(fd, "")
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		err = changedErr(err) // no longer a symlink
	}
	return target, err
}

// xattrs reads the xattrs of rel through its parent directory.
func (t *tree) xattrs(rel string) (map[string]string, error) {
	parent, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		parent, name = rel[:i], rel[i+1:]
	}
	d, err := t.openDir(parent, nil)
	if err != nil {
		return nil, err
	}
	defer d.close()
	layer, _, err := d.xattrs(name)
	return layer, err
}
