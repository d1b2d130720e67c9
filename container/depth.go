package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"

	"snap/store"
)

const (
	// maxStack is how many lowers overlayfs stacks (OVL_MAX_STACK).
	maxStack = 500
	// flattenStep is how many layers one flattened lower takes more than
	// the one before it. A flattened lower covers a multiple of it, so the
	// images of one line of commits share one for this many generations
	// (each one below the limit), and making the next copies the merged
	// bottom once more: 256 layers (about half the stack) keeps both few.
	flattenStep = 256
)

// mountLowers are the lowers to mount for a container of img: extra (its
// init layer) on top of the image's layers (top-most first, as LayerDirs
// gives them). When they are more than overlayfs stacks, the bottom layers,
// a multiple of the step, are replaced by one flattened lower (see
// Store.FlatDir), made the first time and cached; it gives the same merged
// view, so the container and its commits see the image as it is.
//
// limit and step are maxStack and flattenStep but in tests.
func (m *Manager) mountLowers(extra []string, img *store.Image, layers []string, limit, step int) ([]string, error) {
	lowers := append(slices.Clone(extra), layers...)
	if len(lowers) <= limit {
		return lowers, nil
	}
	diffIDs := img.Config.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", img.ID, len(layers), len(diffIDs))
	}
	room := limit - len(extra) - 1 // for the image's own layers above the flattened one
	if room < 1 {
		return nil, fmt.Errorf("%d lowers besides the image: no room for its layers", len(extra))
	}
	// The smallest multiple of step that leaves room layers at most.
	n := len(layers)
	b := (n - room + step - 1) / step * step
	bottom := make([]string, n) // bottom-most first, as diffIDs
	for i, l := range layers {
		bottom[n-1-i] = l
	}
	flat, err := m.flatLower(diffIDs, bottom, b, step)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.ID, err)
	}
	return append(append(slices.Clone(extra), layers[:n-b]...), flat), nil
}

// flatLower returns the flattened lower of the bottom b layers: the
// flattened lower of the bottom b-step ones (when b > step) under the step
// layers above it, merged. Each is at most step+1 lowers to merge.
func (m *Manager) flatLower(diffIDs []digest.Digest, bottom []string, b, step int) (string, error) {
	chain := identity.ChainID(diffIDs[:b])
	return m.st.FlatDir(chain, func(dst string) error {
		var lowers []string // top-most first
		for i := b - 1; i >= b-step && i >= 0; i-- {
			lowers = append(lowers, bottom[i])
		}
		if b > step {
			below, err := m.flatLower(diffIDs, bottom, b-step, step)
			if err != nil {
				return err
			}
			lowers = append(lowers, below)
		}
		return flatten(dst, filepath.Join(filepath.Dir(dst), "mnt"), lowers)
	})
}

// flatten copies the merged view of lowers (top-most first) into dst. The
// view is the kernel's own: a read-only overlay of the lowers, mounted on
// mnt in a mount namespace of a thread of its own, so the mount is never
// seen outside and dies with the thread, even when the process is killed.
func flatten(dst, mnt string, lowers []string) error {
	mnt, lowers, dst, _, err := absPaths(mnt, lowers, dst, "")
	if err != nil {
		return err
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	defer os.Remove(mnt)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread and its mount namespace end with
		// this goroutine. Everything below runs on it (files are read
		// with plain syscalls, on the calling thread).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			errc <- fmt.Errorf("private mounts: %w", err)
			return
		}
		if err := mountOverlayHere(mnt, lowers, "", ""); err != nil {
			errc <- fmt.Errorf("mount %d lowers: %w", len(lowers), err)
			return
		}
		err := copyTree(mnt, dst)
		unix.Unmount(mnt, unix.MNT_DETACH)
		errc <- err
	}()
	return <-errc
}

// copyTree copies the tree at src into dst (which exists) as it is: types,
// content, owners, modes, xattrs, times, hardlinks among its files, device
// numbers. src is trusted (the store's own layers): symlinks are copied,
// never followed.
func copyTree(src, dst string) error {
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	var dirs []string // to set times on after their contents, deepest last
	var dirStats []unix.Stat_t
	err := filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if rel != "." {
				if err := os.Mkdir(to, 0o700); err != nil {
					return err
				}
			}
			dirs, dirStats = append(dirs, to), append(dirStats, st)
		case unix.S_IFREG:
			if st.Nlink > 1 {
				key := inode{st.Dev, st.Ino}
				if first, ok := links[key]; ok {
					return os.Link(first, to)
				}
				links[key] = to
			}
			if err := copyFile(p, to); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		default: // devices, fifos, sockets
			if err := unix.Mknod(to, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("%s: mknod: %w", rel, err)
			}
		}
		return copyMeta(p, to, &st)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setTimes(dirs[i], &dirStats[i]); err != nil {
			return err
		}
	}
	return nil
}

// copyMeta gives to the owner, mode, xattrs and (but for a directory,
// whose entries change it yet) times of from, stated as st. The owner goes
// first: chown clears setuid bits and security.capability.
func copyMeta(from, to string, st *unix.Stat_t) error {
	if err := unix.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", to, err)
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if !symlink {
		if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", to, err)
		}
	}
	if err := copyXattrs(from, to); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	return setTimes(to, st)
}

func setTimes(p string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times %s: %w", p, err)
	}
	return nil
}

// copyXattrs copies every xattr but overlayfs' own (which a merged view
// does not show anyway, and which would mean something in a lower).
func copyXattrs(from, to string) error {
	names, err := listXattrs(from)
	if err != nil {
		return fmt.Errorf("xattrs %s: %w", from, err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		val, err := getXattr(from, name)
		if err != nil {
			return fmt.Errorf("xattr %s %s: %w", from, name, err)
		}
		if err := unix.Lsetxattr(to, name, val, 0); err != nil {
			return fmt.Errorf("xattr %s %s: %w", to, name, err)
		}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
