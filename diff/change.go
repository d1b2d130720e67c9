// Package diff finds what a container changed and writes it as an OCI layer.
//
// A Walker yields Changes in docker's entry order (depth-first, each
// directory's entries sorted by name); WriteLayer turns them into a tar
// stream with whiteouts and opaque markers. The same changes feed `snap diff`.
package diff

import (
	"context"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind says how a path differs from the image below it, as `docker diff` prints it.
type Kind byte

const (
	Added   Kind = 'A'
	Changed Kind = 'C'
	Deleted Kind = 'D'
)

func (k Kind) String() string { return string(k) }

// Change is one path that differs from the lowers.
type Change struct {
	Kind Kind
	// Path is slash-separated and relative to the root, without a leading slash.
	Path string
	// Abs is where the new content lives on disk; empty for Deleted. It is
	// for messages and for Changes made outside this package: the walkers'
	// own changes are read beneath their walk's root fd (see tree), never
	// through Abs, which a racing process could redirect with a symlink.
	Abs string
	// Info describes the new file (Lstat); nil for Deleted.
	Info fs.FileInfo
	// Opaque is set on a directory whose lower contents are hidden.
	Opaque bool
	// Empty writes a regular file as an empty one (size 0, its metadata
	// kept): its content is never read. Filter sets it for Truncate rules;
	// on anything but a regular file it means nothing.
	Empty bool
	// Xattrs are the xattrs the layer carries for the path, when the walker
	// already read them (xattrsKnown); otherwise the writer reads them.
	Xattrs      map[string]string
	xattrsKnown bool
	// tree, when set, is the root the walk found the change under: the
	// writer opens Path beneath it and checks it is still Info.
	tree *tree
	// link is a symlink's target, when the walker already read it.
	link      string
	linkKnown bool
	// carrier: a directory yielded only because something beneath it
	// changed (see ancestors); Filter drops it when that something is
	// omitted.
	carrier bool
	// WhiteoutInfo, for Deleted changes read from an overlay upper, is the
	// whiteout device itself, so the tar entry keeps its owner and time as
	// docker's does.
	WhiteoutInfo fs.FileInfo
}

// String renders the change as a `docker diff` line. A path holding
// characters a terminal would misread (a newline would forge a second line)
// is quoted Go-style; others print as docker prints them.
func (c Change) String() string {
	return string(c.Kind) + " " + QuotePath("/"+c.Path)
}

// QuotePath is p as a change line shows it: as it is, or quoted Go-style
// when it holds characters a terminal would misread (a newline would forge
// a second line).
func QuotePath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(p)
	}
	return p
}

// Walker is a change-walker: it yields the changes of one layer, in
// docker's entry order.
type Walker interface {
	Walk(ctx context.Context, fn func(Change) error) error
}

// ancestors tracks directories that are emitted only once something beneath
// them changes (docker's ChangesDirs does the same, so that permissions of
// parent directories travel with the layer).
type ancestors struct {
	fn      func(Change) error
	pending []Change
}

func (a *ancestors) push(c Change) {
	c.carrier = true
	a.pending = append(a.pending, c)
}

// pop drops the pending entry of the directory being left, if it never got emitted.
func (a *ancestors) pop(p string) {
	if n := len(a.pending); n > 0 && a.pending[n-1].Path == p {
		a.pending = a.pending[:n-1]
	}
}

func (a *ancestors) emit(c Change) error {
	for _, p := range a.pending {
		if err := a.fn(p); err != nil {
			return err
		}
	}
	a.pending = a.pending[:0]
	return a.fn(c)
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}
