package diff

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	archive "github.com/moby/go-archive"
)

// Whole walks the container's filesystem as one full layer, every entry
// Added: the merged view of the upper over the image's lowers, whiteouts
// and opaque directories applied, as a squashed commit writes it. Nothing
// is mounted (a stopped container has no mount, and the upper is read
// as it is on disk); the view is made the way Merged makes it.
//
// The Init lowers are left out. What a squash must give is the image a
// commit gives, flattened: the base's layers with the commit's layer
// applied, which is `docker commit` followed by a squash (docker build
// --squash makes its layer so). docker export would also carry the init
// layer's stubs (/etc/hosts, /etc/resolv.conf, /etc/hostname, /.dockerenv,
// volume mount points), but no commit of docker's ever does, and the same
// container committed with and without --squash must run the same
// filesystem. What the upper holds beneath an init-only directory comes
// with the upper's own copy of that directory, as in the commit's layer.
//
// As Walk, it refuses an upper whose content overlayfs keeps elsewhere
// (redirect_dir, metacopy: ErrUpperIncomplete) and a file named .wh.*.
func (o Overlay) Whole() Walker { return overlayWhole(o) }

type overlayWhole Overlay

func (w overlayWhole) Walk(ctx context.Context, fn func(Change) error) error {
	if w.Init < 0 || w.Init > len(w.Lowers) {
		return fmt.Errorf("upper dir %s: %d init layers of %d lowers", w.Upper, w.Init, len(w.Lowers))
	}
	t, d, err := openUpper(w.Upper)
	if err != nil {
		return err
	}
	d.close()
	defer t.release() // after the scanners stop: deferred first
	pool := newScanPool(ctx, scanWorkers)
	defer pool.stop()
	upper := vdir{tree: t, abs: w.Upper, literal: w.Format == FormatOverlay}
	view := lowerView{dirs: append([]vdir{upper}, lowerDirs(w.Lowers[w.Init:])...)}
	top := pool.submit(func(*dirJob) ([]dirItem, error) { return w.scanDir(pool, "", view) })
	return top.emit(ctx, &ancestors{fn: fn})
}

// scanDir lists one directory of the view and schedules the scans of its
// subdirectories. Xattrs and link targets are read here, through the
// directory fd the listing opened: the writer then opens nothing but
// regular files' content, each once.
func (w overlayWhole) scanDir(pool *scanPool, rel string, v lowerView) ([]dirItem, error) {
	ents, open, err := v.list()
	if err != nil {
		return nil, err
	}
	defer closeDirs(open)
	items := make([]dirItem, 0, len(ents))
	for _, name := range slices.Sorted(maps.Keys(ents)) {
		e, crel := ents[name], join(rel, name)
		if strings.HasPrefix(name, archive.WhiteoutPrefix) {
			return nil, fmt.Errorf("upper /%s: a file named %s... would read as a whiteout in a layer", crel, archive.WhiteoutPrefix)
		}
		c := Change{Kind: Added, Path: crel, Abs: e.abs, Info: e.info, tree: e.tree}
		if e.tree != nil {
			var ov map[string]string
			if c.Xattrs, ov, err = e.dir.xattrs(e.name); err != nil {
				return nil, err
			}
			if err := refuseRedirect(ov, crel); err != nil {
				return nil, err
			}
			c.xattrsKnown = true
		}
		if err := readRest(e.dir, e.name, &c); err != nil {
			return nil, err
		}
		it := dirItem{c: c, emit: true}
		if e.info.IsDir() {
			sub := e.view
			it.sub = pool.submit(func(*dirJob) ([]dirItem, error) { return w.scanDir(pool, crel, sub) })
		}
		items = append(items, it)
	}
	return items, nil
}
