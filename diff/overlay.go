package diff

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	archive "github.com/moby/go-archive"
)

// Format names the whiteout convention of an upper dir.
type Format int

const (
	// FormatOverlay is overlayfs: char 0/0 whiteouts, opaque xattrs.
	FormatOverlay Format = iota
	// FormatAUFS is an AUFS branch: .wh.NAME files and .wh..wh..opq markers.
	FormatAUFS
)

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
}

// Walk yields the upper's changes in docker's order.
func (o Overlay) Walk(ctx context.Context, fn func(Change) error) error {
	root, err := os.Lstat(o.Upper)
	if err != nil {
		return fmt.Errorf("upper dir: %w", err)
	}
	if !root.IsDir() {
		return fmt.Errorf("upper dir %s: not a directory", o.Upper)
	}
	if _, ov, err := readXattrs(o.Upper); err != nil {
		return err
	} else if err := refuseRedirect(ov, ""); err != nil {
		return err
	}
	var lv *lowerView
	if len(o.Lowers) > 0 {
		lv = &lowerView{dirs: o.Lowers}
	}
	return o.walkDir(ctx, fn, "", o.Upper, lv)
}

// refuseRedirect rejects entries whose content is not in the upper alone.
func refuseRedirect(overlay map[string]string, rel string) error {
	for _, x := range []string{"redirect", "metacopy"} {
		if _, has := overlay[x]; has {
			return fmt.Errorf("upper /%s: overlay %s xattr (mount uses redirect_dir or metacopy); the upper alone does not hold the change, use --rootfs with the merged dir instead", rel, x)
		}
	}
	return nil
}

// walkDir visits one upper directory. lv is the merged lower view of the same
// directory, nil when the lowers are unknown or hidden.
func (o Overlay) walkDir(ctx context.Context, fn func(Change) error, rel, abs string, lv *lowerView) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := openDir(abs)
	if err != nil {
		return fmt.Errorf("read upper: %w", err)
	}
	defer d.close()
	ents, err := d.entries()
	if err != nil {
		return fmt.Errorf("read upper: %w", err)
	}
	var lower map[string]*lowerEntry
	if lv != nil {
		var lowerDirs []*dir
		if lower, lowerDirs, err = lv.list(); err != nil {
			return err
		}
		defer closeDirs(lowerDirs)
	}
	for _, info := range ents {
		name := info.Name()
		crel, cabs := join(rel, name), filepath.Join(abs, name)
		if o.Format == FormatAUFS && strings.HasPrefix(name, archive.WhiteoutPrefix) {
			if strings.HasPrefix(name, archive.WhiteoutMetaPrefix) {
				continue // AUFS' own bookkeeping (.wh..wh.plnk, .wh..wh..opq, ...)
			}
			if err := fn(Change{Kind: Deleted, Path: join(rel, name[len(archive.WhiteoutPrefix):]), WhiteoutInfo: info}); err != nil {
				return err
			}
			continue
		}
		if o.Format == FormatOverlay && isWhiteout(info) {
			if err := fn(Change{Kind: Deleted, Path: crel, WhiteoutInfo: info}); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return fmt.Errorf("upper /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		c := Change{Kind: Added, Path: crel, Abs: cabs, Info: info, xattrsKnown: true}
		var ov map[string]string
		if c.Xattrs, ov, err = d.xattrs(name); err != nil {
			return err
		}
		if err := refuseRedirect(ov, crel); err != nil {
			return err
		}
		le := lower[name]
		if le != nil {
			c.Kind = Changed
		}
		if info.IsDir() {
			if o.Format == FormatAUFS {
				if c.Opaque, err = opaqueDir(cabs); err != nil {
					return err
				}
			} else {
				c.Opaque = ov["opaque"] == "y"
			}
		}
		if err := fn(c); err != nil {
			return err
		}
		if info.IsDir() {
			var child *lowerView
			if le != nil && le.info.IsDir() && !c.Opaque {
				child = &le.view
			}
			if err := o.walkDir(ctx, fn, crel, cabs, child); err != nil {
				return err
			}
		}
	}
	return nil
}
