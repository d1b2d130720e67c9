package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxOptions is what mount(2) copies of its data argument: one page, the
// NUL included. A longer lowerdir= is cut and names a directory that does
// not exist (the "no such file or directory" of a 42-layer image).
const maxOptions = 4096 - 1

// errNoLowerdirPlus reports a kernel whose overlayfs cannot take its lowers
// one by one (fsconfig "lowerdir+", Linux 6.8; the new mount API, 5.2).
var errNoLowerdirPlus = errors.New("overlayfs takes no lowerdir+")

// mountOverlay mounts an overlay on target: lowers top-most first, upper
// and work its writable layer (both empty: a read-only overlay). The lowers
// go to the kernel one by one (fsconfig lowerdir+), so their number and
// their paths' length are bounded only by overlayfs' own limit (500); on a
// kernel without lowerdir+ it falls back to mount(2) with short relative
// names (mountOverlayLegacy).
//
// The mount happens on a thread of its own: the fallback changes the
// thread's working directory, which must never be the process's.
func mountOverlay(target string, lowers []string, upper, work string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, with a working directory of its
		// own, ends with this goroutine.
		runtime.LockOSThread()
		errc <- mountOverlayLocked(target, lowers, upper, work)
	}()
	return <-errc
}

// mountOverlayLocked is mountOverlay on the calling thread, which must be
// locked and never return to Go's scheduler (its credentials or working
// directory are its own): asMounter's thread, whose fsuid the mount needs.
func mountOverlayLocked(target string, lowers []string, upper, work string) error {
	target, lowers, upper, work, err := absPaths(target, lowers, upper, work)
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	return mountOverlayHere(target, lowers, upper, work)
}

// absPaths makes the paths absolute, before a thread changes its working
// directory. An empty upper and work stay empty.
func absPaths(target string, lowers []string, upper, work string) (string, []string, string, string, error) {
	all := append([]string{target, upper, work}, lowers...)
	for i, p := range all {
		if p == "" {
			continue
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return "", nil, "", "", err
		}
		all[i] = a
	}
	return all[0], all[3:], all[1], all[2], nil
}

// mountOverlayHere is mountOverlay on the calling thread, which must be
// locked and must not share its working directory with the process. The
// paths must be absolute.
func mountOverlayHere(target string, lowers []string, upper, work string) error {
	err := mountOverlayFS(target, lowers, upper, work)
	if errors.Is(err, errNoLowerdirPlus) {
		if lerr := mountOverlayLegacy(target, lowers, upper, work); lerr != nil {
			return fmt.Errorf("%w (and %v)", lerr, err)
		}
		return nil
	}
	return err
}

// mountOverlayFS mounts with the new mount API: fsopen, one fsconfig per
// option (a lower each), fsmount, move_mount onto target. It changes the
// calling thread's working directory (see shortNames).
func mountOverlayFS(target string, lowers []string, upper, work string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) { // before 5.2
		return fmt.Errorf("fsopen: %w: %w", errNoLowerdirPlus, err)
	}
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	dir, short := shortNames(lowers)
	if dir != "" {
		if err := unix.Chdir(dir); err != nil {
			return err
		}
	}
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fd, key, short(value)); err != nil {
			// EINVAL: an overlayfs that knows no lowerdir+ (6.5 to
			// 6.7), or a value longer than fsconfig takes.
			if errors.Is(err, unix.EINVAL) {
				err = fmt.Errorf("%w: %w", errNoLowerdirPlus, err)
			}
			return fmt.Errorf("%s %s: %w%s", key, value, err, fsLog(fd))
		}
		return nil
	}
	if err := unix.FsconfigSetString(fd, "source", "overlay"); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	for _, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if upper != "" {
		if err := set("upperdir", upper); err != nil {
			return err
		}
		if err := set("workdir", work); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		// Before 6.5 overlayfs parses the options as one legacy string,
		// where "lowerdir+" is an unknown option: EINVAL only here.
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("create: %w: %w%s", errNoLowerdirPlus, err, fsLog(fd))
		}
		return fmt.Errorf("create: %w%s", err, fsLog(fd))
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLog(fd))
	}
	// Closed before returning: an open descriptor of the mount would keep
	// it busy, and the container's unmount would fail.
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s: %w", target, err)
	}
	return nil
}

// shortNames picks the directory most lowers are in (the store's layers/)
// and names every path relative to it where that is shorter. overlayfs
// shows each lower in /proc/self/mountinfo as it was given, all on the
// mount's one line, and readers of that file (libcontainer, moby/sys/
// mountinfo) take 64 KiB a line at most: whole paths passed it at about
// 490 lowers, where a layer's name alone (64 bytes) keeps 500 within
// 38 KiB. fsconfig also takes 256 bytes a value at most.
func shortNames(dirs []string) (string, func(string) string) {
	count := map[string]int{}
	best := ""
	for _, d := range dirs {
		p := filepath.Dir(d)
		if count[p]++; count[p] > count[best] {
			best = p
		}
	}
	return best, func(p string) string {
		if rel, err := filepath.Rel(best, p); err == nil && len(rel) < len(p) {
			return rel
		}
		return p
	}
}

// fsLog is what the kernel said about a failed fsconfig (the filesystem
// context's messages), as ": msg; msg", or "".
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// mountOverlayLegacy mounts with mount(2), whose options must fit a page.
// As docker's overlay2 does with its l/ links, the lowers are given by
// short names relative to the working directory: a directory of symlinks
// named 0, 1, 2... (u and w for the upper and work dirs), about four bytes
// a lower, so the 500 lowers overlayfs stacks take 2 KB. overlayfs resolves
// the paths once, at mount time, so the links go right after.
//
// The calling thread's working directory changes: see mountOverlayHere.
func mountOverlayLegacy(target string, lowers []string, upper, work string) error {
	links, err := os.MkdirTemp(filepath.Dir(target), ".lowers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(links)
	names := make([]string, len(lowers))
	for i, l := range lowers {
		names[i] = strconv.Itoa(i)
		if err := os.Symlink(l, filepath.Join(links, names[i])); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + strings.Join(names, ":")
	if upper != "" {
		for name, dir := range map[string]string{"u": upper, "w": work} {
			if err := os.Symlink(dir, filepath.Join(links, name)); err != nil {
				return err
			}
		}
		opts += ",upperdir=u,workdir=w"
	}
	if len(opts) > maxOptions {
		return fmt.Errorf("%d lowers: %d bytes of mount options, more than a page", len(lowers), len(opts))
	}
	if err := unix.Chdir(links); err != nil {
		return err
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount(2) %d lowers: %w", len(lowers), err)
	}
	return nil
}
