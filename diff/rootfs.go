package diff

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	archive "github.com/moby/go-archive"
)

// Rootfs compares a complete root filesystem with the merged view of its
// lowers (overlay layer dirs, top-most first). Unchanged files are recognised
// by metadata alone; content is never read.
type Rootfs struct {
	Root   string
	Lowers []string
}

// Walk yields the changes in docker's order. A directory that did not change
// itself is still yielded, as Changed, before the first change beneath it.
func (r Rootfs) Walk(ctx context.Context, fn func(Change) error) error {
	root, err := os.Stat(r.Root)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if !root.IsDir() {
		return fmt.Errorf("rootfs %s: not a directory", r.Root)
	}
	anc := &ancestors{fn: fn}
	return r.walkDir(ctx, anc, "", r.Root, lowerView{dirs: r.Lowers})
}

func (r Rootfs) walkDir(ctx context.Context, anc *ancestors, rel, abs string, lv lowerView) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return fmt.Errorf("read rootfs: %w", err)
	}
	lower, err := lv.list()
	if err != nil {
		return err
	}
	mine := make(map[string]fs.DirEntry, len(ents))
	for _, e := range ents {
		mine[e.Name()] = e
	}
	names := slices.Collect(maps.Keys(mine))
	for n := range lower {
		if _, ok := mine[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		crel, cabs := join(rel, name), filepath.Join(abs, name)
		e, le := mine[name], lower[name]
		if e == nil {
			if err := anc.emit(Change{Kind: Deleted, Path: crel}); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return fmt.Errorf("rootfs /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("rootfs /%s: %w", crel, err)
		}
		if info.Mode()&fs.ModeSocket != 0 {
			continue
		}
		if le == nil || le.info.IsDir() != info.IsDir() {
			kind := Added
			if le != nil {
				kind = Changed
			}
			if err := anc.emit(Change{Kind: kind, Path: crel, Abs: cabs, Info: info}); err != nil {
				return err
			}
			if info.IsDir() {
				if err := r.walkAdded(ctx, anc, crel, cabs); err != nil {
					return err
				}
			}
			continue
		}
		changed, xa, err := differs(cabs, info, le)
		if err != nil {
			return err
		}
		c := Change{Kind: Changed, Path: crel, Abs: cabs, Info: info, Xattrs: xa, xattrsKnown: xa != nil}
		if !info.IsDir() {
			if changed {
				if err := anc.emit(c); err != nil {
					return err
				}
			}
			continue
		}
		if changed {
			if err := anc.emit(c); err != nil {
				return err
			}
		} else {
			anc.push(c)
		}
		if err := r.walkDir(ctx, anc, crel, cabs, le.view); err != nil {
			return err
		}
		anc.pop(crel)
	}
	return nil
}

// walkAdded yields everything beneath a directory that has no lower counterpart.
func (r Rootfs) walkAdded(ctx context.Context, anc *ancestors, rel, abs string) error {
	return r.walkDir(ctx, anc, rel, abs, lowerView{})
}

// differs compares metadata the way docker's ChangesDirs does (mode, owner,
// rdev; size and mtime for non-directories), plus link targets, link counts
// of regular files and xattrs.
// It returns the new file's xattrs when it had to read them.
func differs(abs string, info fs.FileInfo, le *lowerEntry) (bool, map[string]string, error) {
	a, aok := info.Sys().(*syscall.Stat_t)
	b, bok := le.info.Sys().(*syscall.Stat_t)
	if !aok || !bok {
		return true, nil, nil
	}
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev {
		return true, nil, nil
	}
	// A new hardlink to an unchanged file changes the file's link count: the
	// file must travel with the layer so the new name can link to it.
	if a.Mode&syscall.S_IFMT == syscall.S_IFREG && a.Nlink != b.Nlink {
		return true, nil, nil
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		if a.Size != b.Size || !sameFsTime(time.Unix(a.Mtim.Unix()), time.Unix(b.Mtim.Unix())) {
			return true, nil, nil
		}
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		t1, err := os.Readlink(abs)
		if err != nil {
			return false, nil, err
		}
		t2, err := os.Readlink(le.abs)
		if err != nil {
			return false, nil, err
		}
		if t1 != t2 {
			return true, nil, nil
		}
	}
	x1, err := Xattrs(abs)
	if err != nil {
		return false, nil, err
	}
	x2, err := Xattrs(le.abs)
	if err != nil {
		return false, nil, err
	}
	return !maps.Equal(x1, x2), x1, nil
}

// sameFsTime treats a time with zero nanoseconds as equal to any time in the
// same second: a tree that went through a tar has whole seconds (docker's rule).
func sameFsTime(a, b time.Time) bool {
	return a.Equal(b) || (a.Unix() == b.Unix() && (a.Nanosecond() == 0 || b.Nanosecond() == 0))
}
