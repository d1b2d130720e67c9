package diff

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	archive "github.com/moby/go-archive"
)

// Rootfs compares a complete root filesystem with the merged view of its
// lowers (overlay layer dirs, top-most first). Unchanged files are
// recognised by metadata where it can tell, by content where it cannot
// (same size, same second, whole-second mtimes: see sameTime).
type Rootfs struct {
	Root   string
	Lowers []string
	// List walks as `docker diff` lists a naive-diff driver's container
	// (vfs, btrfs): every deleted name, never an opaque marker, and a file
	// whose only change is a new hardlink to it is no change.
	List bool
}

// Whole walks the whole root filesystem, every entry Added, as if it had
// no lowers: what a squashed commit writes.
func (r Rootfs) Whole() Walker { return Rootfs{Root: r.Root} }

// Walk yields the changes in docker's order. A directory that did not change
// itself is still yielded, as Changed, before the first change beneath it.
func (r Rootfs) Walk(ctx context.Context, fn func(Change) error) error {
	t, err := openTree(r.Root)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer t.release() // after the scanners stop: deferred first
	pool := newScanPool(ctx, scanWorkers)
	defer pool.stop()
	lv := lowerView{dirs: lowerDirs(r.Lowers)}
	top := pool.submit(func(j *dirJob) ([]dirItem, error) { return r.scanDir(pool, j, t, "", nil, lv) })
	return top.emit(ctx, &ancestors{fn: fn})
}

// scanDir compares one directory (saw: its stat as its parent listed it)
// with its lowers and schedules the scans of its subdirectories.
func (r Rootfs) scanDir(pool *scanPool, job *dirJob, t *tree, rel string, saw *syscall.Stat_t, lv lowerView) ([]dirItem, error) {
	d, err := t.openDir(rel, saw)
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
		crel, st := c.Path, c.Info.Sys().(*syscall.Stat_t)
		sub := pool.submit(func(j *dirJob) ([]dirItem, error) { return r.scanDir(pool, j, t, crel, st, view) })
		items = append(items, dirItem{c: c, emit: emit, sub: sub})
	}
	for _, name := range names {
		crel := join(rel, name)
		info, le := mine[name], lower[name]
		if info == nil {
			items = append(items, dirItem{c: Change{Kind: Deleted, Path: crel}, emit: true})
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return nil, fmt.Errorf("rootfs /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		c := Change{Kind: Added, Path: crel, Abs: filepath.Join(r.Root, crel), Info: info, tree: t}
		if le == nil || le.info.IsDir() != info.IsDir() {
			if le != nil {
				c.Kind = Changed
			}
			if err := readRest(d, name, &c); err != nil {
				return nil, err
			}
			if info.IsDir() {
				subdir(c, true, lowerView{}) // nothing below it: all of it is added
			} else {
				items = append(items, dirItem{c: c, emit: true})
			}
			continue
		}
		c.Kind = Changed
		v, err := compareMeta(d, name, info, le, !r.List)
		if err != nil {
			return nil, err
		}
		if !v.changed && !info.IsDir() {
			continue
		}
		c.Xattrs, c.xattrsKnown, c.link, c.linkKnown = v.xattrs, v.xattrsKnown, v.link, v.linkKnown
		if err := readRest(d, name, &c); err != nil {
			return nil, err
		}
		if info.IsDir() {
			subdir(c, v.changed, le.view)
		} else {
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
	if !r.List && rel != "" && deleted > 0 && deleted == len(lower) {
		job.opaque = true
		items = slices.DeleteFunc(items, func(it dirItem) bool { return it.c.Kind == Deleted })
	}
	return items, nil
}

// readRest reads what the layer writer needs of an entry and the comparison
// did not read yet (xattrs, a symlink's target), here on the scan's worker
// and through the directory's fd: the writer then opens nothing but
// regular files' content.
func readRest(d *dir, name string, c *Change) error {
	var err error
	if !c.xattrsKnown {
		if c.Xattrs, _, err = d.xattrs(name); err != nil {
			return err
		}
		c.xattrsKnown = true
	}
	if c.Info.Mode()&fs.ModeSymlink != 0 && !c.linkKnown {
		if c.link, err = d.readlink(name); err != nil {
			return err
		}
		c.linkKnown = true
	}
	return nil
}
