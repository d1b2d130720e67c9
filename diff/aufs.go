package diff

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	archive "github.com/moby/go-archive"
)

// walkAUFS lists an AUFS branch the way docker's aufs driver does
// (go-archive's Changes, moby's TestChangesWithChangesGH13590): every path
// in the branch is Added, or Changed if the lowers hold it, except a
// directory whose own metadata (mode, owner, size, mtime within docker's
// sameFsTime) is the lower's: it is in the branch only because something
// beneath it changed, and is listed only when an entry directly in it is
// added or deleted. Unlike go-archive, AUFS' bookkeeping (.wh..wh.* at any
// depth, .wh..wh..opq included) is never listed, and the lowers are seen
// through their whiteouts.
//
// self is the directory d's own change (nil at the root); listed says
// whether it has been yielded.
func (m Merged) walkAUFS(ctx context.Context, fn func(Change) error, t *tree, d *dir, self *aufsDir, lv *lowerView) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, lower, release, err := upperAndLowers(d, lv)
	if err != nil {
		return err
	}
	defer release()
	// An entry added or deleted right here lists this directory first.
	parent := func() error {
		if self == nil || self.listed {
			return nil
		}
		self.listed = true
		return fn(self.c)
	}
	rel := ""
	if self != nil {
		rel = self.c.Path
	}
	for _, info := range ents {
		name := info.Name()
		if strings.HasPrefix(name, archive.WhiteoutMetaPrefix) {
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			target, err := whiteoutTarget(rel, name)
			if err != nil {
				return err
			}
			if err := parent(); err != nil {
				return err
			}
			if err := fn(Change{Kind: Deleted, Path: target, WhiteoutInfo: info}); err != nil {
				return err
			}
			continue
		}
		crel := join(rel, name)
		le := lower[name]
		c := &aufsDir{c: Change{Kind: Added, Path: crel, Abs: filepath.Join(m.Upper, crel), Info: info, tree: t}, listed: true}
		switch {
		case le == nil:
			if err := parent(); err != nil {
				return err
			}
		case info.IsDir() && le.info.IsDir() && sameDirMeta(info, le.info):
			c.c.Kind, c.listed = Changed, false
		default:
			c.c.Kind = Changed
		}
		if c.listed {
			if err := fn(c.c); err != nil {
				return err
			}
		}
		if !info.IsDir() {
			continue
		}
		sub, err := d.openDir(name, info.Sys().(*syscall.Stat_t))
		if err != nil {
			return fmt.Errorf("read upper: %w", err)
		}
		var child *lowerView
		if le != nil && le.info.IsDir() {
			child = &le.view
		}
		err = m.walkAUFS(ctx, fn, t, sub, c, child)
		sub.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// aufsDir is a directory's change and whether it has been yielded.
type aufsDir struct {
	c      Change
	listed bool
}

// sameDirMeta is docker's test for a directory that did not change itself
// (size, mode, mtime within sameFsTime), plus its owner: a chown is a change
// of the directory's own.
func sameDirMeta(a, b fs.FileInfo) bool {
	sa, aok := a.Sys().(*syscall.Stat_t)
	sb, bok := b.Sys().(*syscall.Stat_t)
	if !aok || !bok {
		return false
	}
	return sa.Mode == sb.Mode && sa.Size == sb.Size && sa.Uid == sb.Uid && sa.Gid == sb.Gid &&
		sameTime(sa.Mtim, sb.Mtim) != timeDiffers
}
