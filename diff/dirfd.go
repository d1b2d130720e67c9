package diff

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	archive "github.com/moby/go-archive"
	"golang.org/x/sys/unix"

	"snap/internal/fdpath"
)

// A walk asks the kernel two things about every file, its stat and its xattr
// names, on both sides of a rootfs comparison. Asking relative to the open
// directory skips resolving the whole path each time, which is a quarter of
// the cost of comparing a large tree (measured: 100k files, 0.60 s -> 0.45 s).

// The two calls go in as raw syscalls, without telling the Go scheduler:
// on a tree in the page cache each takes ~2 µs, and the scheduler's hand-off
// around a blocking syscall cost 17% of the comparison (100k files, 0.70 s ->
// 0.58 s). A cold tree still works; its stats then overlap only as many disk
// reads as there are Ps.

// dir is an open directory whose entries are stat'ed relative to it.
type dir struct {
	path string
	fd   int
	// cname holds a NUL-terminated entry name for the *at calls, so that
	// asking about a file allocates nothing. A dir is used by one goroutine.
	cname []byte
}

func openDir(path string) (*dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return &dir{path: path, fd: fd}, nil
}

func (d *dir) close() { unix.Close(d.fd) }

// entries lists the directory, sorted by name, with each entry's lstat.
func (d *dir) entries() ([]fs.FileInfo, error) {
	// os.File closes its fd when collected: read the names through a dup.
	dup, err := unix.Dup(d.fd)
	if err != nil {
		return nil, &fs.PathError{Op: "dup", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(dup), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if errors.Is(err, unix.ENOENT) {
		err = changedErr(err) // removed since it was opened
	}
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
	}
	slices.Sort(names)
	stats := make([]fileStat, len(names))
	out := make([]fs.FileInfo, 0, len(names))
	for i, n := range names {
		fi := &stats[i]
		fi.name = n
		err := d.lstat(n, &fi.st)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fi)
	}
	return out, nil
}

// at returns name as a C string in the dir's scratch buffer.
func (d *dir) at(name string) (*byte, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, unix.EINVAL
	}
	d.cname = append(append(d.cname[:0], name...), 0)
	return &d.cname[0], nil
}

func (d *dir) lstat(name string, st *syscall.Stat_t) error {
	p, err := d.at(name)
	if err == nil {
		err = lstatat(d.fd, p, st)
	}
	if err != nil {
		return &fs.PathError{Op: "lstat", Path: d.path + "/" + name, Err: err}
	}
	return nil
}

// xattrs reads an entry's xattrs, split as readXattrs splits them, relative
// to the directory: listxattrat and getxattrat (Linux 6.13) where the kernel
// has them, else the l* calls on /proc/self/fd/DIRFD/NAME. Neither follows
// the entry if it is a symlink, nor resolves the directory's path again, so
// a directory swapped for a symlink after it was opened changes nothing.
func (d *dir) xattrs(name string) (layer, overlay map[string]string, err error) {
	if noXattrat.Load() {
		return readXattrs(d.procPath(name))
	}
	var buf [256]byte
	n, err := d.listxattrat(name, buf[:])
	list := buf[:n]
	switch {
	case err == nil && n == 0, errors.Is(err, unix.ENOTSUP):
		return nil, nil, nil
	case errors.Is(err, unix.ENOSYS):
		noXattrat.Store(true)
		return readXattrs(d.procPath(name))
	case errors.Is(err, unix.ERANGE):
		if list, err = d.listxattrAll(name); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, &fs.PathError{Op: "listxattr", Path: d.path + "/" + name, Err: err}
	}
	for _, b := range bytes.Split(list, []byte{0}) {
		if len(b) == 0 {
			continue
		}
		key := string(b)
		v, ok, err := d.getxattr(name, key)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		layer, overlay = classifyXattr(layer, overlay, key, v)
	}
	return layer, overlay, nil
}

var noXattrat atomic.Bool

// procPath names an entry through the directory's fd, for the l* calls of
// kernels without the *xattrat calls.
func (d *dir) procPath(name string) string {
	return "/proc/self/fd/" + strconv.Itoa(d.fd) + "/" + name
}

func (d *dir) listxattrat(name string, buf []byte) (int, error) {
	p, err := d.at(name)
	if err != nil {
		return 0, err
	}
	var bp unsafe.Pointer
	if len(buf) > 0 {
		bp = unsafe.Pointer(unsafe.SliceData(buf))
	}
	r, _, e := unix.RawSyscall6(unix.SYS_LISTXATTRAT, uintptr(d.fd), uintptr(unsafe.Pointer(p)), uintptr(unix.AT_SYMLINK_NOFOLLOW),
		uintptr(bp), uintptr(len(buf)), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func (d *dir) listxattrAll(name string) ([]byte, error) {
	for {
		n, err := d.listxattrat(name, nil)
		if err != nil {
			return nil, &fs.PathError{Op: "listxattr", Path: d.path + "/" + name, Err: err}
		}
		buf := make([]byte, n+64)
		n, err = d.listxattrat(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, &fs.PathError{Op: "listxattr", Path: d.path + "/" + name, Err: err}
		}
		return buf[:n], nil
	}
}

// xattrArgs is the kernel's struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getxattr reads one xattr of an entry; ok is false when it is not set.
func (d *dir) getxattr(name, key string) (val []byte, ok bool, err error) {
	if noXattrat.Load() {
		return getXattr(d.procPath(name), key)
	}
	buf := make([]byte, 128)
	for {
		n, err := d.getxattrat(name, key, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, false, nil
		case errors.Is(err, unix.ENOSYS):
			noXattrat.Store(true)
			return getXattr(d.procPath(name), key)
		case errors.Is(err, unix.ERANGE):
			sz, err := d.getxattrat(name, key, nil)
			if err != nil {
				return nil, false, &fs.PathError{Op: "getxattr " + key, Path: d.path + "/" + name, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		case err != nil:
			return nil, false, &fs.PathError{Op: "getxattr " + key, Path: d.path + "/" + name, Err: err}
		}
		return buf[:n], true, nil
	}
}

func (d *dir) getxattrat(name, key string, buf []byte) (int, error) {
	p, err := d.at(name)
	if err != nil {
		return 0, err
	}
	k, err := unix.BytePtrFromString(key)
	if err != nil {
		return 0, err
	}
	args := &xattrArgs{size: uint32(len(buf))}
	if len(buf) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	}
	r, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(d.fd), uintptr(unsafe.Pointer(p)), uintptr(unix.AT_SYMLINK_NOFOLLOW),
		uintptr(unsafe.Pointer(k)), uintptr(unsafe.Pointer(args)), unsafe.Sizeof(*args))
	runtime.KeepAlive(buf)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// readlink reads the target of the symlink name. EINVAL (not a symlink)
// means the entry was replaced since it was listed.
func (d *dir) readlink(name string) (string, error) {
	t, err := fdpath.Readlink(d.fd, name)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		err = changedErr(err)
	}
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: d.path + "/" + name, Err: err}
	}
	return t, nil
}

// openDir opens the subdirectory name, checked against saw (its stat as
// listed), without following a symlink.
func (d *dir) openDir(name string, saw *syscall.Stat_t) (*dir, error) {
	p := d.path + "/" + name
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if raceErrno(err) {
			err = changedErr(err)
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	if err := checkFD(fd, saw); err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return &dir{path: p, fd: fd}, nil
}

// openFile opens the regular file name for reading; with saw set, it must
// be the file the walk listed (see tree.openFile). It is for comparing, so
// it leaves the file's atime alone where it may. Without saw the file is a
// lower's, which nothing races: the walk listed it as a regular file, so it
// is opened directly (half the syscalls, on every file a rootfs compares).
func (d *dir) openFile(name string, saw *syscall.Stat_t) (int, error) {
	var fd int
	var err error
	if saw == nil {
		const flags = unix.O_RDONLY | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if fd, err = unix.Openat(d.fd, name, flags|unix.O_NOATIME, 0); err == unix.EPERM {
			fd, err = unix.Openat(d.fd, name, flags, 0)
		}
	} else if fd, err = unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		fd, err = openRegular(fd, saw, true)
	}
	if err != nil {
		if saw != nil && raceErrno(err) {
			err = changedErr(err)
		}
		return -1, &fs.PathError{Op: "open", Path: d.path + "/" + name, Err: err}
	}
	return fd, nil
}

// opaque reports a directory entry that hides what lies below it, in either
// the overlayfs (xattr) or the AUFS (.wh..wh..opq file) convention.
func (d *dir) opaque(name string) (bool, error) {
	for _, ns := range []string{"trusted.overlay.", "user.overlay."} {
		v, ok, err := d.getxattr(name, ns+"opaque")
		if err != nil {
			return false, err
		}
		if ok && string(v) == "y" {
			return true, nil
		}
	}
	fd, err := openBeneath(d.fd, name+"/"+archive.WhiteoutOpaqueDir, unix.O_PATH)
	switch {
	case err == nil:
		unix.Close(fd)
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		return false, nil
	}
	return false, &fs.PathError{Op: "stat", Path: d.path + "/" + name + "/" + archive.WhiteoutOpaqueDir, Err: err}
}

// fileStat is an fs.FileInfo from fstatat, like os's own.
type fileStat struct {
	name string
	st   syscall.Stat_t
}

func (f *fileStat) Name() string       { return f.name }
func (f *fileStat) Size() int64        { return f.st.Size }
func (f *fileStat) ModTime() time.Time { return time.Unix(f.st.Mtim.Unix()) }
func (f *fileStat) IsDir() bool        { return f.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (f *fileStat) Sys() any           { return &f.st }
func (f *fileStat) Mode() fs.FileMode {
	m := fs.FileMode(f.st.Mode & 0o777)
	switch f.st.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if f.st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if f.st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if f.st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
