package diff

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	archive "github.com/moby/go-archive"
)

// lowerView is one directory of the merged view of the lowers: the same
// directory in every lower where it shows through, top-most first.
type lowerView struct{ dirs []string }

// lowerEntry is what the merged lowers hold under one name.
type lowerEntry struct {
	dir  *dir // the lower directory holding it, open while its parent is compared
	name string
	abs  string
	info fs.FileInfo // nil: whited out
	view lowerView   // for a directory, the view of its contents
	open bool        // deeper lowers may still add to view
}

// isWhiteout reports an overlayfs whiteout: a character device 0/0.
func isWhiteout(info fs.FileInfo) bool {
	if info.Mode()&fs.ModeCharDevice == 0 || info.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// opaqueDir reports a directory that hides what lies below it, in either the
// overlayfs (xattr) or the AUFS (.wh..wh..opq file) convention.
func opaqueDir(p string) (bool, error) {
	if ok, err := overlayFlag(p, "opaque"); ok || err != nil {
		return ok, err
	}
	_, err := os.Lstat(filepath.Join(p, archive.WhiteoutOpaqueDir))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// list merges the directory's entries across the lowers. A lower's whiteout,
// or a non-directory, hides the name in every lower below it; an opaque
// directory hides the contents below it.
// The caller closes the returned dirs once done with the entries.
func (v lowerView) list() (map[string]*lowerEntry, []*dir, error) {
	merged := map[string]*lowerEntry{}
	var open []*dir
	for _, d := range v.dirs {
		ld, err := openDir(d)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			closeDirs(open)
			return nil, nil, fmt.Errorf("read lower %s: %w", d, err)
		}
		open = append(open, ld)
		ents, err := ld.entries()
		if err != nil {
			closeDirs(open)
			return nil, nil, fmt.Errorf("read lower %s: %w", d, err)
		}
		for _, info := range ents {
			name := info.Name()
			if strings.HasPrefix(name, archive.WhiteoutMetaPrefix) {
				continue
			}
			whiteout := false
			if strings.HasPrefix(name, archive.WhiteoutPrefix) {
				name, whiteout = name[len(archive.WhiteoutPrefix):], true
			}
			abs := filepath.Join(d, info.Name())
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
				le := &lowerEntry{dir: ld, name: entryName, abs: abs, info: info}
				if info.IsDir() {
					opaque, err := opaqueDir(abs)
					if err != nil {
						closeDirs(open)
						return nil, nil, err
					}
					le.view.dirs, le.open = []string{abs}, !opaque
				}
				merged[name] = le
			case cur.open && !whiteout && info.IsDir():
				opaque, err := opaqueDir(abs)
				if err != nil {
					closeDirs(open)
					return nil, nil, err
				}
				cur.view.dirs = append(cur.view.dirs, abs)
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
