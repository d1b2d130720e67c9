package diff

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	archive "github.com/moby/go-archive"
)

// lowerView is one directory of the merged view of the lowers: the same
// directory in every lower where it shows through, top-most first. Merged
// puts the upper on top, as a vdir opened beneath the upper's root.
type lowerView struct{ dirs []vdir }

// vdir is one directory of a view: a trusted lower, read by path, or one of
// the hostile upper, opened beneath its tree without following symlinks.
type vdir struct {
	tree *tree // nil: a lower
	rel  string
	abs  string
	// literal: the names are what they say, as overlayfs shows an upper's
	// (its whiteouts are devices): a .wh. name is a file's, not a whiteout.
	literal bool
}

func lowerDirs(paths []string) []vdir {
	out := make([]vdir, len(paths))
	for i, p := range paths {
		out[i] = vdir{abs: p}
	}
	return out
}

func (v vdir) open() (*dir, error) {
	if v.tree != nil {
		return v.tree.openDir(v.rel, nil)
	}
	return openDir(v.abs)
}

func (v vdir) child(name string) vdir {
	return vdir{tree: v.tree, rel: join(v.rel, name), abs: filepath.Join(v.abs, name), literal: v.literal}
}

// lowerEntry is what the merged lowers hold under one name.
type lowerEntry struct {
	dir  *dir // the directory holding it, open while its parent is compared
	name string
	abs  string
	info fs.FileInfo // nil: whited out
	view lowerView   // for a directory, the view of its contents
	open bool        // deeper lowers may still add to view
	tree *tree       // set when it lives in the (hostile) upper
}

// isWhiteout reports an overlayfs whiteout: a character device 0/0.
func isWhiteout(info fs.FileInfo) bool {
	if info.Mode()&fs.ModeCharDevice == 0 || info.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// list merges the directory's entries across the lowers. A lower's whiteout,
// or a non-directory, hides the name in every lower below it; an opaque
// directory hides the contents below it.
// The caller closes the returned dirs once done with the entries.
func (v lowerView) list() (map[string]*lowerEntry, []*dir, error) {
	merged := map[string]*lowerEntry{}
	var open []*dir
	for _, vd := range v.dirs {
		ld, err := vd.open()
		// Gone since its parent was listed (the upper of a running
		// container), or not a directory in this lower: nothing to merge.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) {
			continue
		}
		if err != nil {
			closeDirs(open)
			return nil, nil, fmt.Errorf("read lower %s: %w", vd.abs, err)
		}
		open = append(open, ld)
		ents, err := ld.entries()
		if err != nil {
			closeDirs(open)
			return nil, nil, fmt.Errorf("read lower %s: %w", vd.abs, err)
		}
		for _, info := range ents {
			name := info.Name()
			if !vd.literal && strings.HasPrefix(name, archive.WhiteoutMetaPrefix) {
				continue
			}
			whiteout := false
			if !vd.literal && strings.HasPrefix(name, archive.WhiteoutPrefix) {
				name, whiteout = name[len(archive.WhiteoutPrefix):], true
			}
			entryName := info.Name()
			if whiteout {
				info = nil
			} else {
				whiteout = isWhiteout(info)
			}
			cur, seen := merged[name]
			switch {
			case !seen && whiteout:
				merged[name] = &lowerEntry{}
			case !seen:
				le := &lowerEntry{dir: ld, name: entryName, abs: filepath.Join(vd.abs, entryName), info: info, tree: vd.tree}
				if info.IsDir() {
					opaque, err := ld.opaque(entryName)
					if err != nil {
						closeDirs(open)
						return nil, nil, err
					}
					le.view.dirs, le.open = []vdir{vd.child(entryName)}, !opaque
				}
				merged[name] = le
			case cur.open && !whiteout && info.IsDir():
				opaque, err := ld.opaque(entryName)
				if err != nil {
					closeDirs(open)
					return nil, nil, err
				}
				cur.view.dirs = append(cur.view.dirs, vd.child(entryName))
				cur.open = !opaque
			case cur.open:
				cur.open = false
			}
		}
	}
	for name, le := range merged {
		if le.info == nil {
			delete(merged, name)
		}
	}
	return merged, open, nil
}

func closeDirs(ds []*dir) {
	for _, d := range ds {
		d.close()
	}
}
