package diff

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Merged lists what a container changed the way `docker diff` does: the
// container's view (Upper over Lowers) against the image's (Lowers), path
// by path, with docker's metadata rules. Unlike a layer, it names every
// lower entry an opaque directory hides (D), reports a file copied up but
// unchanged as nothing, and lists sockets. Only directories present in the
// upper are read, so the cost still follows the change.
//
// With Format FormatAUFS the upper is an AUFS branch and the rules are
// those of docker's aufs driver instead (see walkAUFS).
type Merged struct {
	Upper  string
	Lowers []string
	Format Format
}

// Walk yields the changes in walk order (docker's own order is random).
func (m Merged) Walk(ctx context.Context, fn func(Change) error) error {
	t, err := openTree(m.Upper)
	if err != nil {
		return fmt.Errorf("upper dir: %w", err)
	}
	defer t.release()
	if m.Format == FormatAUFS {
		d, err := t.openDir("", nil)
		if err != nil {
			return fmt.Errorf("upper dir: %w", err)
		}
		defer d.close()
		return m.walkAUFS(ctx, fn, t, d, nil, &lowerView{dirs: lowerDirs(m.Lowers)})
	}
	anc := &ancestors{fn: fn}
	lowers := lowerDirs(m.Lowers)
	return m.walk(ctx, anc, "", lowerView{dirs: append([]vdir{{tree: t, abs: m.Upper}}, lowers...)}, lowerView{dirs: lowers})
}

func inUpper(v lowerView) bool {
	return len(v.dirs) > 0 && v.dirs[0].tree != nil
}

func (m Merged) walk(ctx context.Context, anc *ancestors, rel string, nv, ov lowerView) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now, nd, err := nv.list()
	if err != nil {
		return err
	}
	defer closeDirs(nd)
	was, od, err := ov.list()
	if err != nil {
		return err
	}
	defer closeDirs(od)
	names := slices.Collect(maps.Keys(now))
	for n := range was {
		if now[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		crel := join(rel, name)
		ne, oe := now[name], was[name]
		if ne == nil {
			if err := anc.emit(Change{Kind: Deleted, Path: crel}); err != nil {
				return err
			}
			continue
		}
		c := Change{Kind: Changed, Path: crel, Abs: ne.abs, Info: ne.info}
		c.tree = ne.tree
		switch {
		case oe == nil || oe.info.IsDir() != ne.info.IsDir():
			if oe == nil {
				c.Kind = Added
			}
			if err := anc.emit(c); err != nil {
				return err
			}
			if ne.info.IsDir() {
				if err := m.walk(ctx, anc, crel, ne.view, lowerView{}); err != nil {
					return err
				}
			}
		case ne.info.IsDir():
			if !inUpper(ne.view) {
				continue // nothing beneath it changed
			}
			v, err := compareMeta(ne.dir, ne.name, ne.info, oe, false)
			if err != nil {
				return err
			}
			if v.changed {
				err = anc.emit(c)
			} else {
				anc.push(c)
			}
			if err != nil {
				return err
			}
			if err := m.walk(ctx, anc, crel, ne.view, oe.view); err != nil {
				return err
			}
			anc.pop(crel)
		case ne.tree != nil:
			v, err := compareMeta(ne.dir, ne.name, ne.info, oe, false)
			if err != nil {
				return err
			}
			if v.changed {
				if err := anc.emit(c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
