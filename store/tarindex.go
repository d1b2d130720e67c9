package store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

const (
	// maxArchiveEntries bounds the name index an archive makes us hold: a
	// docker save of a 127-layer image has about 400 entries.
	maxArchiveEntries = 1 << 16
	// maxMetadataSize bounds a manifest, config or index read into memory;
	// real ones are a few KiB.
	maxMetadataSize = 16 << 20
	// maxLinkHops bounds symlink chains inside an archive.
	maxLinkHops = 16
)

// errOutside marks a name that leaves the archive.
var errOutside = errors.New("outside the archive")

// tarEntry is where one archive entry's data lies.
type tarEntry struct {
	typ       byte
	link      string
	off, size int64
}

// tarIndex maps an archive's entry names to their data, so only the entries
// manifests reference are ever read: nothing is extracted.
type tarIndex struct {
	r       io.ReaderAt
	entries map[string]*tarEntry
}

// indexTar reads the headers of the tar in r[0:size] in one pass. The tar
// reader reads headers straight from the section reader and seeks over
// data, so the position after Next is where the entry's data starts, and an
// entry's data is never read here.
func indexTar(ctx context.Context, r io.ReaderAt, size int64) (*tarIndex, error) {
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	ix := &tarIndex{r: r, entries: map[string]*tarEntry{}}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := path.Clean(h.Name)
		if !fs.ValidPath(name) {
			return nil, fmt.Errorf("archive entry %q: %w", h.Name, errOutside)
		}
		if isSparse(h) {
			// Its data in the archive is small, what it expands to is
			// not; docker save never writes one.
			return nil, fmt.Errorf("archive entry %q: a sparse file (docker save never writes them)", h.Name)
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		e := &tarEntry{typ: h.Typeflag, link: h.Linkname, off: off}
		if h.Typeflag == tar.TypeReg {
			e.size = h.Size
			if h.Size < 0 || off+h.Size > size {
				return nil, fmt.Errorf("archive entry %q: %w", h.Name, io.ErrUnexpectedEOF)
			}
		}
		if _, ok := ix.entries[name]; !ok && len(ix.entries) >= maxArchiveEntries {
			return nil, fmt.Errorf("archive: more than %d entries", maxArchiveEntries)
		}
		ix.entries[name] = e // a later entry of the same name replaces it, as extracting would
	}
	return ix, nil
}

func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// confine cleans a name an archive's metadata gives for one of its entries
// and refuses one that would leave the archive.
func confine(name string) (string, error) {
	clean := path.Clean(name)
	if !fs.ValidPath(clean) || clean == "." {
		return "", errOutside
	}
	return clean, nil
}

// open finds the regular file an archive name leads to. Symlinks and
// hardlinks (old docker saves link shared layers) are resolved in the
// archive's own names, never on disk. It returns the resolved name.
func (ix *tarIndex) open(name string) (string, *io.SectionReader, error) {
	cur, err := confine(name)
	if err != nil {
		return "", nil, err
	}
	for range maxLinkHops {
		e := ix.entries[cur]
		if e == nil {
			if cur != name {
				return "", nil, fmt.Errorf("links to %q: %w", cur, fs.ErrNotExist)
			}
			return "", nil, fs.ErrNotExist
		}
		switch e.typ {
		case tar.TypeReg:
			return cur, io.NewSectionReader(ix.r, e.off, e.size), nil
		case tar.TypeSymlink:
			if path.IsAbs(e.link) {
				return "", nil, fmt.Errorf("symlink to %q: %w", e.link, errOutside)
			}
			next, err := confine(path.Join(path.Dir(cur), e.link))
			if err != nil {
				return "", nil, fmt.Errorf("symlink to %q: %w", e.link, err)
			}
			cur = next
		case tar.TypeLink:
			next, err := confine(e.link)
			if err != nil {
				return "", nil, fmt.Errorf("hardlink to %q: %w", e.link, err)
			}
			cur = next
		default:
			return "", nil, fmt.Errorf("not a regular file (tar type %q)", e.typ)
		}
	}
	return "", nil, fmt.Errorf("more than %d links", maxLinkHops)
}

// readSmall reads a metadata entry whole, refusing one larger than
// maxMetadataSize.
func (ix *tarIndex) readSmall(ctx context.Context, name string) ([]byte, error) {
	_, sr, err := ix.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%d bytes, more than the %d MiB metadata may take", sr.Size(), maxMetadataSize>>20)
	}
	return io.ReadAll(ctxReader{ctx, sr})
}

// ctxReader fails with the context's error once it is cancelled, so a
// copy stops between two reads.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// spool copies r into an unlinked temp file in dir and returns it: the
// file never shows in the store, however the process ends. Runs of zeros
// become holes, so an archive's padding and its zero-filled entries cost
// no disk.
func spool(ctx context.Context, dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, ".tmp-load-*")
	if err != nil {
		return nil, 0, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, 0, err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, 0, err
		}
		m, rerr := io.ReadFull(r, buf)
		if m > 0 {
			var werr error
			if bytes.Equal(buf[:m], zero[:m]) {
				_, werr = f.Seek(int64(m), io.SeekCurrent)
			} else {
				_, werr = f.Write(buf[:m])
			}
			if werr != nil {
				f.Close()
				return nil, 0, werr
			}
			n += int64(m)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			f.Close()
			return nil, 0, rerr
		}
	}
	if err := f.Truncate(n); err != nil { // a trailing hole has no bytes yet
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}
