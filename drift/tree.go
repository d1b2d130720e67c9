package drift

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"
)

// ErrUnsafeEntry is wrapped by the error for a layer entry that would reach
// outside the root: a name with .. escaping it or absolute, a whiteout of
// "..", a hardlink to outside, a NUL in a name.
var ErrUnsafeEntry = errors.New("unsafe layer entry")

const (
	whPrefix  = ".wh."
	whMeta    = ".wh..wh." // aufs' own files (.wh..wh.plnk...): docker skips them
	whOpaque  = ".wh..wh..opq"
	xattrPAX  = "SCHILY.xattr."
	maxXattrs = 1 << 10 // per entry: real files carry a handful
)

// contentRef is where a regular file's data lies: the entry ord (the
// tar.Reader's Next calls, from 0) of layer (an index into the comparer's
// layer table). Two entries of one ref hold the same bytes.
type contentRef struct{ layer, ord int }

// entry is what a tar header says of one path, as applying the layer would
// leave it on disk. Entries are never changed once made.
type entry struct {
	typ          byte // tar.TypeReg, TypeSymlink, TypeChar, TypeBlock, TypeDir or TypeFifo
	hardlink     bool // the layer made it as a link to another path (typ is that path's)
	mode         int64
	uid, gid     int
	size         int64 // regular files
	mtime        time.Time
	link         string // symlink target
	major, minor int64
	xattrs       map[string]string
	content      contentRef // regular files
	layer        int        // the layer that made it, for opaque directories
}

// node is one path of a merged filesystem; kids only for directories.
type node struct {
	e    *entry
	kids map[string]*node
}

func newRoot() *node {
	return &node{e: &entry{typ: tar.TypeDir, mode: 0o755, layer: -1}, kids: map[string]*node{}}
}

// cleanName is an entry's name relative to the root, or an error if it
// would not stay beneath it. Docker's applier would join an absolute name
// to the root; snap refuses it, as no layer writer makes one.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: a NUL in the name", ErrUnsafeEntry)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: an absolute path", ErrUnsafeEntry)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: .. leads out of the root", ErrUnsafeEntry)
	}
	return c, nil
}

// apply applies one header of layer li (its ord-th entry) to the tree at
// root, as docker's applier would apply it to a directory.
func apply(root *node, li, ord int, h *tar.Header) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the root itself: never listed
	}
	dir, base := path.Split(name)
	parent, err := mkdirs(root, dir, li)
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, whPrefix) {
		switch {
		case base == whOpaque:
			// Hides what the lower layers put in the directory; what this
			// layer already put there stays.
			for k, n := range parent.kids {
				if n.e.layer < li {
					delete(parent.kids, k)
				}
			}
		case strings.HasPrefix(base, whMeta):
		default:
			victim := base[len(whPrefix):]
			if victim == "" || victim == "." || victim == ".." {
				return fmt.Errorf("%w: a whiteout of %q", ErrUnsafeEntry, victim)
			}
			delete(parent.kids, victim)
		}
		return nil
	}
	e, err := newEntry(root, h, li, ord)
	if err != nil {
		return err
	}
	n := &node{e: e}
	if e.typ == tar.TypeDir {
		n.kids = map[string]*node{}
		// A directory over a directory keeps what is in it, as the applier's
		// mkdir of an existing directory does; over anything else it starts
		// empty (the applier removes what was there).
		if old := parent.kids[base]; old != nil && old.kids != nil {
			n.kids = old.kids
		}
	}
	parent.kids[base] = n
	return nil
}

// mkdirs returns the directory node of dir ("" or "a/b/"), making the
// directories that are missing as the applier does (0755, root's).
func mkdirs(root *node, dir string, li int) (*node, error) {
	n := root
	if dir == "" {
		return n, nil
	}
	walked := ""
	for c := range strings.SplitSeq(strings.TrimSuffix(dir, "/"), "/") {
		walked = path.Join(walked, c)
		k := n.kids[c]
		if k == nil {
			k = &node{e: &entry{typ: tar.TypeDir, mode: 0o755, layer: li}, kids: map[string]*node{}}
			n.kids[c] = k
		}
		if k.kids == nil {
			// The applier would write through a symlink here; layer
			// writers (docker's, snap's) never make such an entry.
			return nil, fmt.Errorf("its parent /%s is a %s, not a directory", walked, typeName(k.e))
		}
		n = k
	}
	return n, nil
}

// lookup finds the node of a clean relative name, nil if there is none.
func lookup(root *node, name string) *node {
	n := root
	for c := range strings.SplitSeq(name, "/") {
		if n = n.kids[c]; n == nil {
			return nil
		}
	}
	return n
}

// newEntry is the entry header h of layer li makes.
func newEntry(root *node, h *tar.Header, li, ord int) (*entry, error) {
	e := &entry{typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, mtime: h.ModTime, layer: li}
	switch h.Typeflag {
	case tar.TypeReg:
		e.size, e.content = h.Size, contentRef{li, ord}
	case tar.TypeLink:
		if strings.HasPrefix(h.Linkname, "/") {
			return nil, fmt.Errorf("%w: a hardlink to the absolute path %q", ErrUnsafeEntry, h.Linkname)
		}
		target, err := cleanName(h.Linkname)
		if err != nil || target == "." {
			return nil, fmt.Errorf("%w: a hardlink to %q, outside the root", ErrUnsafeEntry, h.Linkname)
		}
		t := lookup(root, target)
		if t == nil {
			return nil, fmt.Errorf("a hardlink to %q, which is not there", h.Linkname)
		}
		if t.e.typ == tar.TypeDir {
			return nil, fmt.Errorf("a hardlink to the directory %q", h.Linkname)
		}
		// One inode: the data (and what kind of file it is) are the
		// target's; the header's own metadata is what the applier sets.
		e.typ, e.hardlink = t.e.typ, true
		e.size, e.content, e.link, e.major, e.minor = t.e.size, t.e.content, t.e.link, t.e.major, t.e.minor
	case tar.TypeSymlink:
		if strings.IndexByte(h.Linkname, 0) >= 0 {
			return nil, fmt.Errorf("%w: a NUL in the symlink's target", ErrUnsafeEntry)
		}
		e.link = h.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.major, e.minor = h.Devmajor, h.Devminor
	case tar.TypeDir, tar.TypeFifo:
	default:
		return nil, fmt.Errorf("tar entry type %q, which no layer holds", h.Typeflag)
	}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPAX); ok {
			if e.xattrs == nil {
				e.xattrs = map[string]string{}
			}
			if len(e.xattrs) >= maxXattrs {
				return nil, fmt.Errorf("more than %d xattrs", maxXattrs)
			}
			e.xattrs[name] = v
		}
	}
	return e, nil
}

// sameMeta reports whether two entries are the same file but, for regular
// files, perhaps their content: a regular file and a hardlink to the same
// bytes are the same file (docker's diff ignores link counts too).
func sameMeta(a, b *entry) bool {
	return a.typ == b.typ && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid &&
		a.size == b.size && a.mtime.Equal(b.mtime) && a.link == b.link &&
		a.major == b.major && a.minor == b.minor && maps.Equal(a.xattrs, b.xattrs)
}

func typeName(e *entry) string {
	switch e.typ {
	case tar.TypeReg:
		if e.hardlink {
			return TypeHardlink
		}
		return TypeFile
	case tar.TypeDir:
		return TypeDir
	case tar.TypeSymlink:
		return TypeSymlink
	case tar.TypeChar:
		return TypeChar
	case tar.TypeBlock:
		return TypeBlock
	case tar.TypeFifo:
		return TypeFifo
	}
	return ""
}

func fileSize(e *entry) int64 {
	if e.typ == tar.TypeReg {
		return e.size
	}
	return NoSize
}
