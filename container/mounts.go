package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrVolume is returned (wrapped) for a volume spec snap cannot use.
var ErrVolume = errors.New("invalid volume")

// volume is one bind mount, docker run's -v HOST:CTR[:ro|rw], or, with no
// Source, docker run's -v CTR: an anonymous volume (see makeVolumes).
type volume struct {
	Source   string
	Dest     string // clean and absolute
	ReadOnly bool
	anon     bool // one of meta.AnonVolumes
}

// parseVolume reads HOST:CTR[:ro|rw] or CTR. The destination is cleaned as
// docker's parser cleans it: "/../../tmp/x" is "/tmp/x", inside the rootfs.
func parseVolume(v string) (volume, error) {
	p := strings.Split(v, ":")
	if len(p) == 1 && path.IsAbs(p[0]) {
		p = []string{"", p[0]}
	} else if len(p) < 2 || len(p) > 3 || p[0] == "" || !path.IsAbs(p[1]) || (len(p) == 3 && p[2] != "ro" && p[2] != "rw") {
		return volume{}, fmt.Errorf("volume %q: want HOST:CTR[:ro|rw] or CTR, CTR absolute: %w", v, ErrVolume)
	}
	dest := cleanDest(p[1])
	if dest == "/" {
		return volume{}, fmt.Errorf("volume %q: the destination can't be '/': %w", v, ErrVolume)
	}
	return volume{Source: p[0], Dest: dest, ReadOnly: len(p) == 3 && p[2] == "ro"}, nil
}

// cleanDest makes a path from an image or a user absolute and clean, so a
// leading ".." stays at the root.
func cleanDest(p string) string { return path.Clean("/" + p) }

// applyMounts adds the container's volumes to the spec, parents before
// children as docker sorts them. runc resolves each destination inside the
// rootfs when it mounts (securejoin), where the init layer has the mount
// point ready (writeInit), so none lands in the container's upper.
func applyMounts(spec *specs.Spec, meta *Meta, rootfs string) error {
	if err := makeWorkdir(rootfs, meta.Cwd, meta.Security.Userns); err != nil {
		return err
	}
	var vols []volume
	for _, v := range meta.Volumes {
		vol, err := parseVolume(v)
		if err != nil {
			return err
		}
		if vol.Source == "" {
			continue // an anonymous volume, in meta.AnonVolumes
		}
		// docker's -v makes a missing host directory.
		if _, err := os.Stat(vol.Source); errors.Is(err, fs.ErrNotExist) {
			if err := mkdirAllOwned(vol.Source, meta.Security.Userns); err != nil {
				return fmt.Errorf("volume %s: %w", vol.Source, err)
			}
		}
		vols = append(vols, vol)
	}
	for _, av := range meta.AnonVolumes {
		vols = append(vols, volume{Source: av.Source, Dest: av.Dest, anon: true})
	}
	slices.SortStableFunc(vols, func(a, b volume) int {
		return strings.Count(a.Dest, "/") - strings.Count(b.Dest, "/")
	})
	for _, vol := range vols {
		opts := []string{"rbind", "rprivate", "rw"}
		if vol.ReadOnly {
			opts[2] = "ro"
		}
		if vol.anon && meta.Security.Userns != nil {
			// Its files keep in-container ids on disk, as the layers'.
			opts = append(opts, "idmap")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: vol.Dest, Type: "bind", Source: vol.Source, Options: opts})
	}
	return nil
}

// mkdirAllOwned is os.MkdirAll, the directories it makes owned by the
// container's root, as docker's userns-remap makes them: made as the
// host's root, a volume the container's root could not write to.
func mkdirAllOwned(dir string, u *Userns) error {
	if u == nil {
		return os.MkdirAll(dir, 0o755)
	}
	uid, okU := hostID(u.UIDMap, 0)
	gid, okG := hostID(u.GIDMap, 0)
	if !okU || !okG {
		return fmt.Errorf("userns: %w", ErrHostRoot)
	}
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		} else if err == nil {
			if err := os.Lchown(missing[i], int(uid), int(gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeWorkdir makes the working directory as docker makes it before the
// process starts: resolved inside the rootfs (a symlink on the way, even a
// dangling one, is followed there, never to the host), the missing part
// made 0755. runc would make it only through symlinks that resolve.
// In a user namespace it is made as the container's root: the rootfs maps
// no id to host root, so the host's root could not own it (EOVERFLOW).
func makeWorkdir(rootfs, cwd string, userns *Userns) error {
	p, err := securejoin.SecureJoin(rootfs, cwd)
	if err != nil {
		return fmt.Errorf("working directory %s: %w", cwd, err)
	}
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	rel := strings.TrimPrefix(p, rootfs)
	mkdir := func() error { return pathrs.MkdirAll(rootfs, rel, 0o755) }
	if userns != nil {
		uid, okU := hostID(userns.UIDMap, 0)
		gid, okG := hostID(userns.GIDMap, 0)
		if !okU || !okG {
			return fmt.Errorf("working directory %s: %w", cwd, ErrHostRoot)
		}
		inner := mkdir
		mkdir = func() error { return asMounter(int(uid), int(gid), inner) }
	}
	if err := mkdir(); err != nil {
		return fmt.Errorf("working directory %s: %w", cwd, err)
	}
	return nil
}

// imageFS looks paths up in a stack of overlay lower dirs, top-most first,
// as the overlay mount will show them: whiteouts (char 0/0) and opaque
// directories hide what is below. Each dir is opened as an os.Root, so no
// lookup leaves it.
type imageFS struct {
	dirs  []string
	roots []*os.Root
}

func openImageFS(dirs []string) (*imageFS, error) {
	v := &imageFS{dirs: dirs}
	for _, d := range dirs {
		r, err := os.OpenRoot(d)
		if err != nil {
			v.close()
			return nil, err
		}
		v.roots = append(v.roots, r)
	}
	return v, nil
}

func (v *imageFS) close() {
	for _, r := range v.roots {
		r.Close()
	}
}

// lstat finds rel (clean, relative, no symlink among its parents in the
// merged view) and returns its entry and the layer holding it.
func (v *imageFS) lstat(rel string) (fs.FileInfo, int, error) {
	parts := strings.Split(rel, "/")
	for i, r := range v.roots {
		present, last, err := v.parents(i, parts)
		if err != nil {
			return nil, 0, err
		}
		if present {
			fi, err := r.Lstat(rel)
			if err == nil {
				if isWhiteout(fi) {
					return nil, 0, fs.ErrNotExist
				}
				return fi, i, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, 0, err
			}
		}
		if last {
			break
		}
	}
	return nil, 0, fs.ErrNotExist
}

// parents walks rel's parent directories (parts, rel split at "/") in
// layer i: present is whether they are all directories there, so that
// rel itself may be; last is whether layer i hides the layers below it
// on that path (an opaque parent, or a parent that is no directory).
func (v *imageFS) parents(i int, parts []string) (present, last bool, err error) {
	present = true
	for n := 1; n < len(parts); n++ {
		a := strings.Join(parts[:n], "/")
		fi, err := v.roots[i].Lstat(a)
		if errors.Is(err, fs.ErrNotExist) {
			return false, last, nil
		}
		if err != nil {
			return false, false, err
		}
		if !fi.IsDir() { // a whiteout, a file or a symlink ends the lower dirs' part
			return false, true, nil
		}
		if opaque(path.Join(v.dirs[i], a)) {
			last = true
		}
	}
	return present, last, nil
}

func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

func opaque(p string) bool {
	buf := make([]byte, 1)
	for _, k := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Lgetxattr(p, k, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

// maxLinks is securejoin's bound on the symlinks one path may go through.
const maxLinks = 255

// resolve follows dest through the merged view as securejoin does at the
// root: absolute symlinks start again at the root, ".." never climbs above
// it. It returns the path relative to the root with no symlink left in it,
// and the entry there (nil when there is none).
func (v *imageFS) resolve(dest string) (string, fs.FileInfo, error) {
	var cur []string
	rest := strings.Split(dest, "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		p := strings.Join(append(cur, c), "/")
		e, layer, err := v.lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cur = append(cur, c)
		case err != nil:
			return "", nil, fmt.Errorf("%s: %w", dest, err)
		case e.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxLinks {
				return "", nil, fmt.Errorf("%s: %w", dest, unix.ELOOP)
			}
			target, err := v.roots[layer].Readlink(p)
			if err != nil {
				return "", nil, fmt.Errorf("%s: %w", dest, err)
			}
			if path.IsAbs(target) {
				cur = nil
			}
			rest = append(strings.Split(target, "/"), rest...)
		case !e.IsDir() && slices.ContainsFunc(rest, func(s string) bool { return s != "" && s != "." }):
			return "", nil, fmt.Errorf("%s: /%s is not a directory: %w", dest, p, unix.ENOTDIR)
		default:
			cur = append(cur, c)
		}
	}
	rel := strings.Join(cur, "/")
	if rel == "" {
		return "", nil, fmt.Errorf("%s: resolves to the root itself: %w", dest, ErrVolume)
	}
	fi, _, err := v.lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return rel, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", dest, err)
	}
	return rel, fi, nil
}
