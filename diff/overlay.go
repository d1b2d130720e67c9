package diff

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	archive "github.com/moby/go-archive"
)

// Format names the whiteout convention of an upper dir.
type Format int

const (
	// FormatOverlay is overlayfs: char 0/0 whiteouts, opaque xattrs.
	FormatOverlay Format = iota
	// FormatAUFS is an AUFS branch: .wh.NAME files and .wh..wh..opq markers.
	FormatAUFS
	// FormatFuseOverlayfs is fuse-overlayfs' upper: overlayfs' whiteouts and
	// opaque xattr, and in each opaque directory two markers of its own
	// (a .wh..wh..opq file and a .wh..opq whiteout) that say the same.
	FormatFuseOverlayfs
)

// fuseOpaqueWhiteout is the whiteout fuse-overlayfs puts beside
// .wh..wh..opq in an opaque directory.
const fuseOpaqueWhiteout = ".wh..opq"

// ParseFormat reads a --upper-format value.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "overlay", "overlayfs":
		return FormatOverlay, nil
	case "aufs":
		return FormatAUFS, nil
	}
	return 0, fmt.Errorf("unknown upper format %q (want overlay or aufs)", s)
}

// Overlay walks an overlayfs upper dir. It reads only the upper, so its cost
// follows the size of the change; Lowers (top-most first) are read only to
// tell an added path from a changed one.
type Overlay struct {
	Upper  string
	Lowers []string
	Format Format
	// Init counts the top-most Lowers that are the runtime's init layer
	// (docker's "<id>-init", snap's own): the stubs it mounts over
	// (/etc/hosts, /etc/resolv.conf, /etc/hostname, volume mount points).
	// They count for telling added from changed, as for docker diff, but no
	// commit carries their content, so Whole leaves them out.
	Init int
}

// Merged is the same container seen as `docker diff` sees it (see Merged):
// what snap diff lists for a container, where a layer's changes differ.
func (o Overlay) Merged() Walker {
	return Merged{Upper: o.Upper, Lowers: o.Lowers, Format: o.Format}
}

// Walk yields the upper's changes in docker's order.
func (o Overlay) Walk(ctx context.Context, fn func(Change) error) error {
	t, d, err := openUpper(o.Upper)
	if err != nil {
		return err
	}
	defer t.release()
	defer d.close()
	var lv *lowerView
	if len(o.Lowers) > 0 {
		lv = &lowerView{dirs: lowerDirs(o.Lowers)}
	}
	return o.walkDir(ctx, fn, t, d, "", lv)
}

// openUpper opens an upper dir as the hostile tree it is, and refuses one
// whose root overlayfs redirected. The caller releases the tree and closes
// the root's dir.
func openUpper(upper string) (*tree, *dir, error) {
	root, err := os.Lstat(upper)
	if err != nil {
		return nil, nil, fmt.Errorf("upper dir: %w", err)
	}
	if !root.IsDir() {
		return nil, nil, fmt.Errorf("upper dir %s: not a directory", upper)
	}
	t, err := openTree(upper)
	if err != nil {
		return nil, nil, fmt.Errorf("upper dir: %w", err)
	}
	d, err := t.openDir("", nil)
	if err != nil {
		t.release()
		return nil, nil, fmt.Errorf("upper dir: %w", err)
	}
	_, ov, err := d.xattrs(".")
	if err == nil {
		err = refuseRedirect(ov, "")
	}
	if err != nil {
		d.close()
		t.release()
		return nil, nil, err
	}
	return t, d, nil
}

// ErrUpperIncomplete is returned (wrapped) for an upper whose changes are
// not all in it (redirect_dir, metacopy): the merged view holds them.
var ErrUpperIncomplete = errors.New("the upper alone does not hold the change")

// refuseRedirect rejects entries whose content is not in the upper alone.
func refuseRedirect(overlay map[string]string, rel string) error {
	for _, x := range []string{"redirect", "metacopy"} {
		if _, has := overlay[x]; has {
			return fmt.Errorf("upper /%s: overlay %s xattr (mount uses redirect_dir or metacopy): %w", rel, x, ErrUpperIncomplete)
		}
	}
	return nil
}

// walkDir visits one open upper directory. lv is the merged lower view of
// the same directory, nil when the lowers are unknown or hidden.
// Subdirectories are opened from d's fd without following symlinks, so the
// walk never leaves the upper whatever is renamed meanwhile.
func (o Overlay) walkDir(ctx context.Context, fn func(Change) error, t *tree, d *dir, rel string, lv *lowerView) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, lower, release, err := upperAndLowers(d, lv)
	if err != nil {
		return err
	}
	defer release()
	for _, info := range ents {
		name := info.Name()
		crel := join(rel, name)
		if o.Format == FormatAUFS && strings.HasPrefix(name, archive.WhiteoutPrefix) {
			if strings.HasPrefix(name, archive.WhiteoutMetaPrefix) {
				continue // AUFS' own bookkeeping (.wh..wh.plnk, .wh..wh..opq, ...)
			}
			target, err := whiteoutTarget(rel, name)
			if err != nil {
				return err
			}
			if err := fn(Change{Kind: Deleted, Path: target, WhiteoutInfo: info}); err != nil {
				return err
			}
			continue
		}
		if o.Format == FormatFuseOverlayfs && (name == archive.WhiteoutOpaqueDir || name == fuseOpaqueWhiteout) {
			continue // its opaque markers: the directory's opaque xattr says it
		}
		if o.Format != FormatAUFS && isWhiteout(info) {
			if err := fn(Change{Kind: Deleted, Path: crel, WhiteoutInfo: info}); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return fmt.Errorf("upper /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		c := Change{Kind: Added, Path: crel, Abs: filepath.Join(o.Upper, crel), Info: info, tree: t, xattrsKnown: true}
		var ov map[string]string
		if c.Xattrs, ov, err = d.xattrs(name); err != nil {
			return err
		}
		if err := refuseRedirect(ov, crel); err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if c.link, err = d.readlink(name); err != nil {
				return err
			}
			c.linkKnown = true
		}
		le := lower[name]
		if le != nil {
			c.Kind = Changed
		}
		if !info.IsDir() {
			if err := fn(c); err != nil {
				return err
			}
			continue
		}
		sub, err := d.openDir(name, info.Sys().(*syscall.Stat_t))
		if err != nil {
			return fmt.Errorf("read upper: %w", err)
		}
		if err := o.walkSub(ctx, fn, t, sub, c, le, ov); err != nil {
			sub.close()
			return err
		}
		sub.close()
	}
	return nil
}

// walkSub yields directory c, open as sub, and what lies beneath it.
func (o Overlay) walkSub(ctx context.Context, fn func(Change) error, t *tree, sub *dir, c Change, le *lowerEntry, ov map[string]string) error {
	if o.Format == FormatAUFS {
		var st syscall.Stat_t
		err := sub.lstat(archive.WhiteoutOpaqueDir, &st)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		c.Opaque = err == nil
	} else {
		c.Opaque = ov["opaque"] == "y"
	}
	if o.Format == FormatFuseOverlayfs && (le == nil || !le.info.IsDir()) {
		// fuse-overlayfs marks every directory it creates opaque; where
		// the lowers hold no directory there is nothing to hide, and a
		// naive differ (docker's, on this driver) writes no marker.
		c.Opaque = false
	}
	if err := fn(c); err != nil {
		return err
	}
	var child *lowerView
	if le != nil && le.info.IsDir() && !c.Opaque {
		child = &le.view
	}
	return o.walkDir(ctx, fn, t, sub, c.Path, child)
}

// upperAndLowers lists an upper directory and, when lv is known, what the
// lowers hold under the same path. release closes the lower dirs, which
// stay open while their entries are compared.
func upperAndLowers(d *dir, lv *lowerView) ([]fs.FileInfo, map[string]*lowerEntry, func(), error) {
	ents, err := d.entries()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read upper: %w", err)
	}
	if lv == nil {
		return ents, nil, func() {}, nil
	}
	lower, lowerDirs, err := lv.list()
	if err != nil {
		return nil, nil, nil, err
	}
	return ents, lower, func() { closeDirs(lowerDirs) }, nil
}

// whiteoutTarget is the path an AUFS whiteout file (.wh.NAME in dir rel)
// deletes. NAME must be an entry of the same directory: ".wh.." would delete
// the directory holding it and ".wh..." its parent.
func whiteoutTarget(rel, name string) (string, error) {
	orig := strings.TrimPrefix(name, archive.WhiteoutPrefix)
	if orig == "" || orig == "." || orig == ".." {
		return "", fmt.Errorf("upper /%s: a whiteout must name an entry of its own directory", join(rel, name))
	}
	return join(rel, orig), nil
}
