package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// maxUserDB bounds what is read of the image's /etc/passwd and /etc/group.
const maxUserDB = 1 << 20

// ErrOwner is returned (wrapped) when a copy's owner names a user or group
// the image does not have.
var ErrOwner = errors.New("unknown user or group")

// CopyInto copies the copy step's source, from contextDir, into root (a
// container's root filesystem, mounted on the host), as docker's COPY does:
//
//   - a file goes to dst, or into dst when dst ends in "/" or is an existing
//     directory; a directory's contents go into dst, created if missing;
//   - missing parents of dst are created 0755, owned by 0:0;
//   - symlinks inside a copied directory are copied as symlinks (the
//     source itself is followed, inside contextDir only);
//   - every file, directory and symlink copied is owned by c.Owner ("" is
//     0:0; names are looked up in the image's /etc/passwd and /etc/group; a
//     user without a group is in the group of the user's number, as docker
//     does), has c.Mode's permission bits when set and its source's
//     otherwise, and keeps its source's modification time, so that the
//     same sources make the same layer;
//   - an existing file or symlink at a copied file's path is replaced (a
//     symlink is not followed there); an existing directory is kept as it
//     is, and written into; a directory is never put over a file.
//
// The source stays inside contextDir (an absolute name, "..", or a symlink
// leading out is refused) and FIFOs, devices and sockets in it are refused
// before anything is written. Nothing is written outside root: symlinks in
// the image are resolved as inside the container (an absolute one from
// root), and every write goes through an os.Root of root, so a symlink
// swapped in meanwhile fails rather than leads out. Hardlinks between
// sources are copied as separate files, and xattrs are not copied, as
// docker's COPY.
func CopyInto(root, contextDir string, c Copy) error {
	if err := copyInto(root, contextDir, c); err != nil {
		return fmt.Errorf("copy %s to %s: %w", c.Src, c.Dst, err)
	}
	return nil
}

func copyInto(root, contextDir string, c Copy) error {
	if !path.IsAbs(c.Dst) {
		return fmt.Errorf("%q is not an absolute path", c.Dst)
	}
	ctx, err := os.OpenRoot(contextDir)
	if err != nil {
		return err
	}
	defer ctx.Close()
	entries, err := sourceEntries(ctx, c.Src)
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	w := &writer{root: root, r: r, ctx: ctx, mode: c.Mode}
	if w.uid, w.gid, err = lookupOwner(r, c.Owner); err != nil {
		return err
	}

	// Where the source itself goes.
	dst := strings.TrimPrefix(path.Clean(c.Dst), "/")
	if dst == "" {
		dst = "."
	}
	top := entries[0]
	var target string
	if top.info.IsDir() {
		if target, err = w.dir(dst); err != nil {
			return err
		}
	} else {
		into := strings.HasSuffix(c.Dst, "/") || strings.HasSuffix(c.Dst, "/.") || dst == "."
		if !into {
			if fi, err := w.statInside(dst); err == nil && fi.IsDir() {
				into = true
			}
		}
		if into {
			d, err := w.mkdirParents(dst)
			if err != nil {
				return err
			}
			target = path.Join(d, path.Base(top.name))
		} else {
			d, err := w.mkdirParents(path.Dir(dst))
			if err != nil {
				return err
			}
			target = path.Join(d, path.Base(dst))
		}
	}

	// Directories get their times last: writing into one changes its own.
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	for _, e := range entries {
		name := target
		if e.rel != "." {
			d, err := w.resolveDir(path.Join(target, path.Dir(e.rel)))
			if err != nil {
				return err
			}
			name = path.Join(d, path.Base(e.rel))
		}
		switch {
		case e.info.IsDir():
			// An image's symlink to a directory is followed, as docker
			// does: lib/ copied onto a merged-/usr image goes to usr/lib.
			if name, err = w.resolveDir(name); err != nil {
				return err
			}
			d, created, err := w.copyDir(name, e)
			if err != nil {
				return err
			}
			if created {
				dirs = append(dirs, dirTime{d, e.info.ModTime()})
			}
		case e.info.Mode()&fs.ModeSymlink != 0:
			err = w.copySymlink(name, e)
		default:
			err = w.copyFile(name, e)
		}
		if err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := r.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t); err != nil {
			return err
		}
	}
	return nil
}

// writer writes a copy into root (r, whose path is root).
type writer struct {
	root     string
	r        *os.Root
	ctx      *os.Root
	uid, gid int
	mode     *fs.FileMode
}

// resolveDir resolves the image's symlinks in the directory name (relative
// to root) as the container would see them, to a name os.Root follows no
// symlink in: an absolute symlink means the container's root, and "..",
// at the root, stays there.
func (w *writer) resolveDir(name string) (string, error) {
	p, err := securejoin.SecureJoin(w.root, name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", "/"+name, err)
	}
	rel, err := filepath.Rel(w.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s: resolves outside the root", "/"+name)
	}
	return filepath.ToSlash(rel), nil
}

// statInside stats name as the container would, its symlinks resolved.
func (w *writer) statInside(name string) (fs.FileInfo, error) {
	d, err := w.resolveDir(name)
	if err != nil {
		return nil, err
	}
	return w.r.Stat(d)
}

// mkdirParents makes the directory name and its missing parents, 0755 and
// owned by 0:0, and returns it resolved.
func (w *writer) mkdirParents(name string) (string, error) {
	cur := "."
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." {
			continue
		}
		next, err := w.resolveDir(path.Join(cur, c))
		if err != nil {
			return "", err
		}
		fi, err := w.r.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := w.r.Mkdir(next, 0o755); err != nil {
				return "", err
			}
			// Mkdir's mode went through the umask.
			if err := w.r.Chmod(next, 0o755|fs.ModeDir); err != nil {
				return "", err
			}
			if err := w.r.Lchown(next, 0, 0); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case !fi.IsDir():
			return "", fmt.Errorf("/%s: not a directory", next)
		}
		cur = next
	}
	return cur, nil
}

// dir makes the target directory of a directory's copy, its missing parents
// as mkdirParents does, and returns it resolved; the target itself gets its
// metadata in copyDir.
func (w *writer) dir(name string) (string, error) {
	if name == "." {
		return ".", nil
	}
	d, err := w.mkdirParents(path.Dir(name))
	if err != nil {
		return "", err
	}
	return w.resolveDir(path.Join(d, path.Base(name)))
}

// perm is the mode a copied entry gets.
func (w *writer) perm(src fs.FileMode) fs.FileMode {
	if w.mode != nil {
		return *w.mode
	}
	return src & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// copyDir makes the directory name (resolved already) unless one is there;
// created says whether it made it (and so owns its metadata).
func (w *writer) copyDir(name string, e srcEntry) (string, bool, error) {
	fi, err := w.r.Lstat(name)
	switch {
	case err == nil && fi.IsDir():
		return name, false, nil
	case err == nil:
		// BuildKit's COPY refuses to put a directory over a file too.
		return "", false, fmt.Errorf("/%s: not a directory", name)
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	if err := w.r.Mkdir(name, 0o700); err != nil {
		return "", false, err
	}
	if err := w.r.Lchown(name, w.uid, w.gid); err != nil {
		return "", false, err
	}
	// After the chown, which clears setuid and setgid.
	if err := w.r.Chmod(name, w.perm(e.info.Mode())|fs.ModeDir); err != nil {
		return "", false, err
	}
	return name, true, nil
}

// clear removes what is at name so that a file or symlink can take its
// place; a directory stays, and is an error.
func (w *writer) clear(name string) error {
	fi, err := w.r.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("/%s: is a directory", name)
	}
	return w.r.Remove(name)
}

func (w *writer) copyFile(name string, e srcEntry) error {
	if err := w.clear(name); err != nil {
		return err
	}
	src, err := openSource(w.ctx, e)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := w.r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, src, e.info.Size()); err != nil {
		f.Close()
		return fmt.Errorf("/%s: %w", name, err)
	}
	if err := f.Chown(w.uid, w.gid); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(w.perm(e.info.Mode())); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	t := e.info.ModTime()
	return w.r.Chtimes(name, t, t)
}

func (w *writer) copySymlink(name string, e srcEntry) error {
	if err := w.clear(name); err != nil {
		return err
	}
	if err := w.r.Symlink(e.link, name); err != nil {
		return err
	}
	if err := w.r.Lchown(name, w.uid, w.gid); err != nil {
		return err
	}
	// os.Root has no Lchtimes: utimensat on the parent's descriptor.
	d, err := w.r.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	ts := unix.NsecToTimespec(e.info.ModTime().UnixNano())
	if err := unix.UtimesNanoAt(int(d.Fd()), path.Base(name), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("/%s: %w", name, err)
	}
	return nil
}

// lookupOwner resolves "USER[:GROUP]" against the image's /etc/passwd and
// /etc/group (read through r, so inside the image). Numbers need no file.
func lookupOwner(r *os.Root, spec string) (uid, gid int, err error) {
	if spec == "" {
		return 0, 0, nil
	}
	if err := checkOwner(spec); err != nil {
		return 0, 0, fmt.Errorf("owner: %w", err)
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		b, err := readUserDB(r, "etc/passwd")
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", spec, err)
		}
		l, err := user.ParsePasswdFilter(bytes.NewReader(b), func(e user.User) bool { return e.Name == u })
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: /etc/passwd: %w", spec, err)
		}
		if len(l) == 0 {
			return 0, 0, fmt.Errorf("owner %q: user %q: %w", spec, u, ErrOwner)
		}
		uid = l[0].Uid
	}
	if !hasGroup {
		// docker: "a username without groupname or a UID without GID will
		// use the same numeric UID as the GID".
		return uid, uid, nil
	}
	if gid, err = strconv.Atoi(g); err == nil {
		return uid, gid, nil
	}
	b, err := readUserDB(r, "etc/group")
	if err != nil {
		return 0, 0, fmt.Errorf("owner %q: %w", spec, err)
	}
	l, err := user.ParseGroupFilter(bytes.NewReader(b), func(e user.Group) bool { return e.Name == g })
	if err != nil {
		return 0, 0, fmt.Errorf("owner %q: /etc/group: %w", spec, err)
	}
	if len(l) == 0 {
		return 0, 0, fmt.Errorf("owner %q: group %q: %w", spec, g, ErrOwner)
	}
	return uid, l[0].Gid, nil
}

// readUserDB reads the image's passwd or group file: a regular file of a
// bounded size, opened without blocking (a FIFO would hang the read). A
// missing file is empty: every name is then unknown.
func readUserDB(r *os.Root, name string) ([]byte, error) {
	f, err := r.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxUserDB {
		return nil, fmt.Errorf("/%s: not a regular file of at most %d bytes", name, maxUserDB)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxUserDB))
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	return b, nil
}
