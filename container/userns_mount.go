package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoIdmap is returned (wrapped) where the kernel or a layer's filesystem
// cannot make idmapped mounts, which a user namespace needs here.
var ErrNoIdmap = errors.New("idmapped mounts are not supported (they need Linux 5.19 or later and a filesystem such as ext4, xfs, btrfs or tmpfs)")

// mountUserns mounts the container's overlay (mountOverlay). With a user
// namespace, every layer is first an idmapped mount (on-disk id N shows as
// the host id the container's N maps to), and the overlay is made by a
// thread whose fsuid and fsgid are the container's root: overlay does its
// own work in the upper (the work dir, copy-up, whiteouts) as its mounter,
// and through the idmapped upper that is on-disk 0. So the upper holds the
// in-container ids on disk, as it does without a user namespace, and a
// commit reads them as they are.
func mountUserns(meta *Meta, target string, lowers []string, upper, work string) error {
	u := meta.Security.Userns
	if u == nil {
		return mountOverlay(target, lowers, upper, work)
	}
	if filepath.Dir(upper) != filepath.Dir(work) {
		return fmt.Errorf("userns: upper %s and work %s must share a directory", upper, work)
	}
	uid, okU := hostID(u.UIDMap, 0)
	gid, okG := hostID(u.GIDMap, 0)
	if !okU || !okG {
		return fmt.Errorf("userns: %w", ErrHostRoot)
	}
	ns, err := usernsFD(u)
	if err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	defer unix.Close(ns)
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	// The overlay takes a private clone of each layer's mount: the
	// detached mounts are reached through their fds and go with them.
	idmapped := func(dir string) (string, error) {
		fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return "", fmt.Errorf("userns: clone %s: %w", dir, err)
		}
		fds = append(fds, fd)
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns)}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				err = fmt.Errorf("%w: %w", ErrNoIdmap, err)
			}
			return "", fmt.Errorf("userns: idmap %s: %w", dir, err)
		}
		return "/proc/self/fd/" + strconv.Itoa(fd), nil
	}
	mapped := make([]string, len(lowers))
	for i, l := range lowers {
		if mapped[i], err = idmapped(l); err != nil {
			return err
		}
	}
	parent, err := idmapped(filepath.Dir(upper))
	if err != nil {
		return err
	}
	return asMounter(int(uid), int(gid), func() error {
		// On asMounter's thread: the overlay must be made with its fsuid.
		return mountOverlayLocked(target, mapped, filepath.Join(parent, filepath.Base(upper)), filepath.Join(parent, filepath.Base(work)))
	})
}

// secbitNoSetuidFixup keeps a thread's capabilities when its fsuid leaves
// 0 (capabilities(7)).
const secbitNoSetuidFixup = 1 << 2

// asMounter runs fn on a thread of its own whose fsuid and fsgid are uid
// and gid, capabilities kept. Credentials are per thread: the thread is
// never handed back to Go's scheduler (locked, it ends with fn's goroutine),
// so no other goroutine ever runs with them.
func asMounter(uid, gid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		bits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
		if err == nil {
			err = unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits|secbitNoSetuidFixup), 0, 0, 0)
		}
		if err != nil {
			errc <- fmt.Errorf("userns: securebits: %w", err)
			return
		}
		// setfsuid and setfsgid report the old id, never an error: the
		// new one is read back instead.
		unix.Setfsgid(gid)
		unix.Setfsuid(uid)
		if got, _ := unix.SetfsuidRetUid(-1); got != uid {
			errc <- fmt.Errorf("userns: setfsuid %d: still %d", uid, got)
			return
		}
		if got, _ := unix.SetfsgidRetGid(-1); got != gid {
			errc <- fmt.Errorf("userns: setfsgid %d: still %d", gid, got)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// usernsFD returns a user namespace with u's maps: that of a child stopped
// at its execve (ptrace), which never runs; the namespace outlives it
// through the fd. runc's internal/userns does the same.
func usernsFD(u *Userns) (int, error) {
	// A traced child is detached, and runs, if its tracer thread exits:
	// the tracer stays this locked thread until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := os.StartProcess("/proc/self/exe", []string{"snap-userns"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: sysMaps(u.UIDMap),
		GidMappings: sysMaps(u.GIDMap),
		Ptrace:      true,
	}})
	if err != nil {
		return -1, fmt.Errorf("new user namespace: %w", err)
	}
	defer func() {
		p.Kill()
		p.Wait()
	}()
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("new user namespace: %w", err)
	}
	return fd, nil
}

func sysMaps(ms []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
