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

	"golang.org/x/sys/unix"

	"snap/diff"
	"snap/internal/fdpath"
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
		return fmt.Errorf("cannot mount a volume over the image's %s /%s: %w", fileKind(fi.Mode()), rel, ErrVolume)
	}
	layers, err := view.dirLayers(rel)
	if err != nil {
		return err
	}
	var src []layerDir
	defer func() {
		for _, d := range src {
			d.f.Close()
		}
	}()
	for _, i := range layers {
		f, err := view.roots[i].Open(rel)
		if err != nil {
			return err
		}
		src = append(src, layerDir{i, f})
	}
	root, err := openDirNoFollow(unix.AT_FDCWD, data)
	if err != nil {
		return err
	}
	defer root.Close()
	c := &copier{root: root, links: map[[2]uint64]string{}}
	if err := c.dir(src, "/"+rel, root, ""); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(src[0].f.Fd()), &st); err != nil {
		return err
	}
	return c.meta(&st, src[0].procPath(""), "/"+rel, root, -1, "")
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

// layerDir is one layer's copy of a directory of the merged view.
type layerDir struct {
	layer int
	f     *os.File
}

// procPath names the entry name of the directory through its fd, for the
// l* xattr calls: nothing on the way is followed.
func (d layerDir) procPath(name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(int(d.f.Fd()))
	if name != "" {
		p += "/" + name
	}
	return p
}

// copier copies a directory of an image's merged view into a volume, as
// docker's copy-up (a tar of the directory untarred into the volume):
// directories, files, symlinks (never followed), hardlinks as links, device
// nodes and fifos; sockets are left out, as docker's tar leaves them.
// Owners, modes (setuid included), xattrs (all but overlayfs' own; docker
// keeps only security.capability) and times are kept. Both sides are
// walked through directory fds, one name at a time: nothing is resolved
// twice, so the cost follows the entries, not their depth, and nothing is
// followed. The volume is new and nothing else writes it.
type copier struct {
	root  *os.File
	links map[[2]uint64]string // dev and inode of a multiply linked file: its first path in the volume
}

// dir copies the merged directory shown by src (its copies in the layers
// that show entries, top-most first) into dst, which is rel in the volume;
// path is the directory in the image, for errors.
func (c *copier) dir(src []layerDir, path string, dst *os.File, rel string) error {
	seen := map[string]bool{}
	var names []string
	for _, d := range src {
		ns, err := d.f.Readdirnames(-1)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, n := range ns {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	dfd := int(dst.Fd())
	for _, name := range names {
		p, r := path+"/"+name, rel+"/"+name
		if rel == "" {
			r = name
		}
		// The top-most layer that has the name shows it, unless a
		// whiteout hides it.
		var st unix.Stat_t
		k := -1
		for i, d := range src {
			err := unix.Fstatat(int(d.f.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			k = i
			break
		}
		if k < 0 || st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			continue
		}
		from := src[k]
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := c.subdir(src[k:], &st, name, p, dst, r); err != nil {
				return err
			}
			continue
		case unix.S_IFREG:
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := c.links[key]; ok {
					if err := unix.Linkat(int(c.root.Fd()), first, dfd, name, 0); err != nil {
						return fmt.Errorf("%s: link to %s: %w", p, first, err)
					}
					continue
				}
				c.links[key] = r
			}
			if err := c.file(from, &st, name, p, dst); err != nil {
				return err
			}
			continue
		case unix.S_IFLNK:
			target, err := fdpath.Readlink(int(from.f.Fd()), name)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := unix.Symlinkat(target, dfd, name); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		case unix.S_IFSOCK:
			continue
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			if err := unix.Mknodat(dfd, name, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		default:
			return fmt.Errorf("%s: unknown file type %#o", p, st.Mode&unix.S_IFMT)
		}
		if err := c.meta(&st, from.procPath(name), p, nil, dfd, name); err != nil {
			return err
		}
	}
	return nil
}

// subdir copies the directory name, shown by the top-most of src, into a
// new directory in dst. Its copies in the layers below show entries too,
// down to an opaque one or to a layer where the name is no directory.
func (c *copier) subdir(src []layerDir, st *unix.Stat_t, name, p string, dst *os.File, r string) error {
	var sub []layerDir
	defer func() {
		for _, d := range sub {
			d.f.Close()
		}
	}()
	for _, d := range src {
		var ls unix.Stat_t
		err := unix.Fstatat(int(d.f.Fd()), name, &ls, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if ls.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		f, err := openDirNoFollow(int(d.f.Fd()), name)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		sub = append(sub, layerDir{d.layer, f})
		if fdOpaque(f) {
			break
		}
	}
	if err := unix.Mkdirat(int(dst.Fd()), name, 0o700); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	out, err := openDirNoFollow(int(dst.Fd()), name)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer out.Close()
	if err := c.dir(sub, p, out, r); err != nil {
		return err
	}
	return c.meta(st, sub[0].procPath(""), p, out, -1, "")
}

func fdOpaque(f *os.File) bool {
	buf := make([]byte, 1)
	for _, k := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Fgetxattr(int(f.Fd()), k, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

// file copies the regular file name of from into a new file in dst.
func (c *copier) file(from layerDir, st *unix.Stat_t, name, p string, dst *os.File) error {
	fd, err := unix.Openat(int(from.f.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	in := os.NewFile(uintptr(fd), p)
	defer in.Close()
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file (%v)", p, err)
	}
	fd, err = unix.Openat(int(dst.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	out := os.NewFile(uintptr(fd), p)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return c.meta(st, from.procPath(name), p, out, -1, "")
}

// meta gives the new entry (f, or name in dfd) the owner, xattrs, mode and
// times of st and of the xattrs at src: in that order, since a chown clears
// setuid bits and security.capability.
func (c *copier) meta(st *unix.Stat_t, src, p string, f *os.File, dfd int, name string) error {
	xattrs, err := diff.Xattrs(src)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	wrap := func(op string, err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("%s: %s: %w", p, op, err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if f != nil {
		fd := int(f.Fd())
		if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
			return wrap("chown", err)
		}
		for k, v := range xattrs {
			if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil {
				return wrap("setxattr "+k, err)
			}
		}
		if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
			return wrap("chmod", err)
		}
		return wrap("utimes", unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH))
	}
	if err := unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return wrap("chown", err)
	}
	dst := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + name
	for k, v := range xattrs {
		if err := unix.Lsetxattr(dst, k, []byte(v), 0); err != nil {
			return wrap("setxattr "+k, err)
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(dfd, name, st.Mode&0o7777, 0); err != nil {
			return wrap("chmod", err)
		}
	}
	return wrap("utimes", unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func openDirNoFollow(dfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// dirLayers are the layers, top-most first, whose copies of the merged
// directory rel (clean, relative, a directory in the merged view) show
// entries: down to an opaque copy or to a layer where it is no directory.
func (v *imageFS) dirLayers(rel string) ([]int, error) {
	parts := strings.Split(rel, "/")
	var out []int
	for i, r := range v.roots {
		present, last, err := v.parents(i, parts)
		if err != nil {
			return nil, err
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
				out = append(out, i)
				if opaque(path.Join(v.dirs[i], rel)) {
					last = true
				}
			}
		}
		if last {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("/%s: %w", rel, unix.ENOTDIR)
	}
	return out, nil
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
