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
	pool := newScanPool(ctx, scanWorkers)
	defer pool.stop()
	top := pool.submit(func(j *dirJob) ([]dirItem, error) { return r.scanDir(pool, j, "", r.Root, lowerView{dirs: r.Lowers}) })
	return top.emit(ctx, &ancestors{fn: fn})
}

// scanDir compares one directory with its lowers and schedules the scans of
// its subdirectories.
func (r Rootfs) scanDir(pool *scanPool, job *dirJob, rel, abs string, lv lowerView) ([]dirItem, error) {
	d, err := openDir(abs)
	if err != nil {
		return nil, fmt.Errorf("read rootfs: %w", err)
	}
	defer d.close()
	ents, err := d.entries()
	if err != nil {
		return nil, fmt.Errorf("read rootfs: %w", err)
	}
	lower, lowerDirs, err := lv.list()
	if err != nil {
		return nil, err
	}
	defer closeDirs(lowerDirs)
	mine := make(map[string]fs.FileInfo, len(ents))
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
	var items []dirItem
	subdir := func(c Change, emit bool, view lowerView) {
		crel, cabs := c.Path, c.Abs
		sub := pool.submit(func(j *dirJob) ([]dirItem, error) { return r.scanDir(pool, j, crel, cabs, view) })
		items = append(items, dirItem{c: c, emit: emit, sub: sub})
	}
	for _, name := range names {
		crel, cabs := join(rel, name), filepath.Join(abs, name)
		info, le := mine[name], lower[name]
		if info == nil {
			items = append(items, dirItem{c: Change{Kind: Deleted, Path: crel}, emit: true})
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return nil, fmt.Errorf("rootfs /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		if le == nil || le.info.IsDir() != info.IsDir() {
			c := Change{Kind: Added, Path: crel, Abs: cabs, Info: info}
			if le != nil {
				c.Kind = Changed
			}
			if info.IsDir() {
				subdir(c, true, lowerView{}) // nothing below it: all of it is added
			} else {
				items = append(items, dirItem{c: c, emit: true})
			}
			continue
		}
		changed, xa, err := differs(d, cabs, info, le)
		if err != nil {
			return nil, err
		}
		c := Change{Kind: Changed, Path: crel, Abs: cabs, Info: info, Xattrs: xa, xattrsKnown: xa != nil}
		switch {
		case info.IsDir():
			subdir(c, changed, le.view)
		case changed:
			items = append(items, dirItem{c: c, emit: true})
		}
	}
	// Everything the lowers held here is gone: one opaque marker says so
	// (as docker's layer of a replaced directory does) instead of a whiteout
	// for each name. Not at the root, which has no entry to carry it.
	deleted := 0
	for _, it := range items {
		if it.c.Kind == Deleted {
			deleted++
		}
	}
	if rel != "" && deleted > 0 && deleted == len(lower) {
		job.opaque = true
		items = slices.DeleteFunc(items, func(it dirItem) bool { return it.c.Kind == Deleted })
	}
	return items, nil
}

// differs compares metadata the way docker's ChangesDirs does (mode, owner,
// rdev; size and mtime for non-directories), plus link targets, link counts
// of regular files and xattrs.
// It returns the new file's xattrs when it had to read them.
func differs(d *dir, abs string, info fs.FileInfo, le *lowerEntry) (bool, map[string]string, error) {
	return compareMeta(d, info.Name(), abs, info, le, true)
}

// compareMeta is differs for a file in dir d; links says whether a changed
// link count counts (for a layer it must; docker diff ignores it).
func compareMeta(d *dir, name, abs string, info fs.FileInfo, le *lowerEntry, links bool) (bool, map[string]string, error) {
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
	if links && a.Mode&syscall.S_IFMT == syscall.S_IFREG && a.Nlink != b.Nlink {
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
	x1, _, err := d.xattrs(name)
	if err != nil {
		return false, nil, err
	}
	x2, _, err := le.dir.xattrs(le.name)
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
