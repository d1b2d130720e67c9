package container

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"snap/diff"
)

// AnonVolume is one of a container's anonymous volumes, docker's for an
// image's VOLUME that no -v covers and for a -v with no host part. It is a
// directory in the container's own directory, so removing the container
// always removes it (docker keeps it until rm -v), and it is mounted
// read-write over Dest: what the container writes there is in no commit.
type AnonVolume struct {
	Name   string // 64 hex digits, as docker names them
	Dest   string // clean and absolute, as given: runc resolves it in the rootfs
	Source string // the volume's directory on the host
}

// volumesDir holds a container's anonymous volumes, one directory each.
const volumesDir = "volumes"

// makeVolumes makes the anonymous volumes of the container being made in
// dir (to be renamed to final) and fills each with what the image has at
// its path, as docker does when it creates the container: the init layer
// (dir/init, already written with the mount points) over the image's
// layers, read through the layers, never through a mounted rootfs. The
// files keep their on-disk (in-container) ids; with a user namespace the
// volume is an idmapped mount, as the layers are.
func makeVolumes(dir, final string, layers []string, meta *Meta, imageVolumes map[string]struct{}) ([]AnonVolume, error) {
	bound := map[string]bool{}
	var dests []string
	for _, v := range meta.Volumes {
		vol, err := parseVolume(v)
		if err != nil {
			return nil, err
		}
		if vol.Source != "" {
			bound[vol.Dest] = true
		} else {
			dests = append(dests, vol.Dest)
		}
	}
	for v := range imageVolumes {
		dests = append(dests, cleanDest(v))
	}
	// A -v HOST:CTR on the path replaces the image's volume (docker's
	// IsDestinationMounted: the same path, nothing looser).
	dests = slices.DeleteFunc(dests, func(d string) bool { return bound[d] })
	slices.Sort(dests)
	dests = slices.Compact(dests)
	if len(dests) == 0 {
		return nil, nil
	}
	abs, err := filepath.Abs(final)
	if err != nil {
		return nil, err
	}
	view, err := openImageFS(append([]string{filepath.Join(dir, "init")}, layers...))
	if err != nil {
		return nil, err
	}
	defer view.close()
	if err := os.Mkdir(filepath.Join(dir, volumesDir), 0o700); err != nil {
		return nil, err
	}
	var out []AnonVolume
	for _, dest := range dests {
		b := make([]byte, 32)
		rand.Read(b)
		av := AnonVolume{Name: hex.EncodeToString(b), Dest: dest}
		av.Source = filepath.Join(abs, volumesDir, av.Name)
		if err := fillVolume(view, dest, filepath.Join(dir, volumesDir, av.Name)); err != nil {
			return nil, fmt.Errorf("volume %s: %w", dest, err)
		}
		out = append(out, av)
	}
	return out, nil
}

// fillVolume makes the volume's directory at data and copies into it what
// view shows at dest, resolved inside the rootfs as runc will resolve the
// mount's destination (a VOLUME that is a symlink in the image is the
// directory it points to in the image, never on the host).
func fillVolume(view *imageFS, dest, data string) error {
	if err := os.Mkdir(data, 0o755); err != nil {
		return err
	}
	rel, fi, err := view.resolve(dest)
	if err != nil {
		return err
	}
	if fi == nil {
		return nil // writeInit made every mount point; a fresh volume is empty
	}
	if !fi.IsDir() {
		return fmt.Errorf("the image has a %s at /%s, docker's \"cannot mount volume over existing file\": %w", fileKind(fi.Mode()), rel, ErrVolume)
	}
	root, err := openDirNoFollow(unix.AT_FDCWD, data)
	if err != nil {
		return err
	}
	defer root.Close()
	c := &copier{view: view, root: root, links: map[[2]uint64]string{}}
	if err := c.dir(rel, root, ""); err != nil {
		return err
	}
	_, layer, err := view.lstat(rel)
	if err != nil {
		return err
	}
	return c.meta(fi, layer, rel, int(root.Fd()), "", root)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// copier copies a directory of an image's merged view into a volume, as
// docker's copy-up (a tar of the directory untarred into the volume):
// directories, files, symlinks (never followed), hardlinks as links, device
// nodes and fifos; sockets are left out, as docker's tar leaves them.
// Owners, modes (setuid included), xattrs (all but overlayfs' own; docker
// keeps only security.capability) and times are kept. Everything is made
// relative to directory fds of the new volume, which nothing else writes.
type copier struct {
	view  *imageFS
	root  *os.File
	links map[[2]uint64]string // dev and inode of a multiply linked file: its first path in the volume
}

// dir copies the merged directory src into dst, which is rel in the volume.
func (c *copier) dir(src string, dst *os.File, rel string) error {
	names, err := c.view.readDir(src)
	if err != nil {
		return err
	}
	dfd := int(dst.Fd())
	for _, name := range names {
		s, r := src+"/"+name, path.Join(rel, name)
		fi, layer, err := c.view.lstat(s)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a whiteout, or hidden by an upper layer
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
				return fmt.Errorf("/%s: %w", s, err)
			}
			sub, err := openDirNoFollow(dfd, name)
			if err != nil {
				return fmt.Errorf("/%s: %w", s, err)
			}
			err = c.dir(s, sub, r)
			if err == nil {
				err = c.meta(fi, layer, s, int(sub.Fd()), "", sub)
			}
			sub.Close()
			if err != nil {
				return err
			}
			continue
		case mode.IsRegular():
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := c.links[key]; ok {
					if err := unix.Linkat(int(c.root.Fd()), first, dfd, name, 0); err != nil {
						return fmt.Errorf("/%s: link to %s: %w", s, first, err)
					}
					continue
				}
				c.links[key] = r
			}
			if err := c.file(fi, layer, s, dfd, name); err != nil {
				return err
			}
			continue
		case mode&fs.ModeSymlink != 0:
			target, err := c.view.roots[layer].Readlink(s)
			if err != nil {
				return err
			}
			if err := unix.Symlinkat(target, dfd, name); err != nil {
				return fmt.Errorf("/%s: %w", s, err)
			}
		case mode&fs.ModeSocket != 0:
			continue
		case mode&(fs.ModeDevice|fs.ModeNamedPipe) != 0:
			if err := unix.Mknodat(dfd, name, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
				return fmt.Errorf("/%s: %w", s, err)
			}
		default:
			return fmt.Errorf("/%s: unknown file type %v", s, mode)
		}
		if err := c.meta(fi, layer, s, dfd, name, nil); err != nil {
			return err
		}
	}
	return nil
}

// file copies the regular file s into a new file name in dfd.
func (c *copier) file(fi fs.FileInfo, layer int, s string, dfd int, name string) error {
	in, err := c.view.roots[layer].OpenFile(s, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	if now, err := in.Stat(); err != nil || !now.Mode().IsRegular() {
		return fmt.Errorf("/%s: not a regular file (%v)", s, err)
	}
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("/%s: %w", s, err)
	}
	out := os.NewFile(uintptr(fd), name)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("/%s: %w", s, err)
	}
	return c.meta(fi, layer, s, dfd, name, out)
}

// meta gives the entry name in dfd (or f itself when name is "") the
// owner, xattrs, mode and times of s: in that order, since a chown clears
// setuid bits and security.capability.
func (c *copier) meta(fi fs.FileInfo, layer int, s string, dfd int, name string, f *os.File) error {
	st := fi.Sys().(*syscall.Stat_t)
	xattrs, err := diff.Xattrs(filepath.Join(c.view.dirs[layer], s))
	if err != nil {
		return err
	}
	wrap := func(op string, err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("/%s: %s: %w", s, op, err)
	}
	symlink := fi.Mode()&fs.ModeSymlink != 0
	if f != nil {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return wrap("chown", err)
		}
		for k, v := range xattrs {
			if err := unix.Fsetxattr(int(f.Fd()), k, []byte(v), 0); err != nil {
				return wrap("setxattr "+k, err)
			}
		}
		if err := unix.Fchmod(int(f.Fd()), st.Mode&0o7777); err != nil {
			return wrap("chmod", err)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
		return wrap("utimes", unix.UtimesNanoAt(int(f.Fd()), "", ts, unix.AT_EMPTY_PATH))
	}
	if err := unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return wrap("chown", err)
	}
	// The l* calls through the directory's fd: the entry is the one just
	// made, and never followed.
	p := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + name
	for k, v := range xattrs {
		if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
			return wrap("setxattr "+k, err)
		}
	}
	if !symlink {
		if err := unix.Fchmodat(dfd, name, st.Mode&0o7777, 0); err != nil {
			return wrap("chmod", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return wrap("utimes", unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func openDirNoFollow(dfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// readDir lists the merged directory rel (clean, relative, a directory in
// the merged view): the names of every layer that shows its entries, from
// the top down to an opaque copy or to a layer where it is no directory.
// Some names may be whiteouts or hidden: lstat tells.
func (v *imageFS) readDir(rel string) ([]string, error) {
	parts := strings.Split(rel, "/")
	seen := map[string]bool{}
	var names []string
	for i, r := range v.roots {
		present, last := true, false
		for n := 1; n < len(parts); n++ {
			a := strings.Join(parts[:n], "/")
			fi, err := r.Lstat(a)
			if errors.Is(err, fs.ErrNotExist) {
				present = false
				break
			}
			if err != nil {
				return nil, err
			}
			if !fi.IsDir() {
				present, last = false, true
				break
			}
			if opaque(path.Join(v.dirs[i], a)) {
				last = true
			}
		}
		if present {
			fi, err := r.Lstat(rel)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return nil, err
			case !fi.IsDir():
				last = true
			default:
				f, err := r.Open(rel)
				if err != nil {
					return nil, err
				}
				ns, err := f.Readdirnames(-1)
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("/%s: %w", rel, err)
				}
				for _, n := range ns {
					if !seen[n] {
						seen[n] = true
						names = append(names, n)
					}
				}
				if opaque(path.Join(v.dirs[i], rel)) {
					last = true
				}
			}
		}
		if last {
			break
		}
	}
	slices.Sort(names)
	return names, nil
}

// runVolumes is the container's VOLUMEs as docker commits them: the
// image's, and each -v CTR as the user gave it.
func runVolumes(meta *Meta, image map[string]struct{}) map[string]struct{} {
	for _, v := range meta.Volumes {
		if strings.Contains(v, ":") {
			continue
		}
		if image == nil {
			image = map[string]struct{}{}
		}
		image[v] = struct{}{}
	}
	return image
}
