package store

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
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
	// held: the entry's data is in r. An archive read from a stream holds
	// only the entries its manifests reference (see streamArchive).
	held bool
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
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		e, err := ix.add(h, off)
		if err != nil {
			return nil, err
		}
		if e != nil {
			if e.typ == tar.TypeReg && off+e.size > size {
				return nil, fmt.Errorf("archive entry %q: %w", h.Name, io.ErrUnexpectedEOF)
			}
			e.held = true
		}
	}
	return ix, nil
}

// add records the entry h whose data starts at off; it returns nil for a
// header that names no file (a global PAX header).
func (ix *tarIndex) add(h *tar.Header, off int64) (*tarEntry, error) {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil, nil
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
	e := &tarEntry{typ: h.Typeflag, link: h.Linkname, off: off}
	if h.Typeflag == tar.TypeReg {
		if h.Size < 0 {
			return nil, fmt.Errorf("archive entry %q: %w", h.Name, io.ErrUnexpectedEOF)
		}
		e.size = h.Size
	}
	if _, ok := ix.entries[name]; !ok && len(ix.entries) >= maxArchiveEntries {
		return nil, fmt.Errorf("archive: more than %d entries", maxArchiveEntries)
	}
	ix.entries[name] = e // a later entry of the same name replaces it, as extracting would
	return e, nil
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

// resolve follows an archive name to the entry it leads to. Symlinks and
// hardlinks (old docker saves link shared layers) are resolved in the
// archive's own names, never on disk. It returns the resolved name.
func (ix *tarIndex) resolve(name string) (string, *tarEntry, error) {
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
			return cur, e, nil
		}
	}
	return "", nil, fmt.Errorf("more than %d links", maxLinkHops)
}

// open finds the regular file an archive name leads to and returns its
// resolved name and data.
func (ix *tarIndex) open(name string) (string, *io.SectionReader, error) {
	cur, e, err := ix.resolve(name)
	if err != nil {
		return "", nil, err
	}
	if e.typ != tar.TypeReg {
		return "", nil, fmt.Errorf("not a regular file (tar type %q)", e.typ)
	}
	if !e.held {
		return "", nil, fmt.Errorf("%q: not kept from the stream (no manifest named it)", cur)
	}
	return cur, io.NewSectionReader(ix.r, e.off, e.size), nil
}

// readSmall reads a metadata entry whole, refusing one larger than
// maxMetadataSize.
func (ix *tarIndex) readSmall(ctx context.Context, name string) ([]byte, error) {
	sr, err := ix.openSmall(name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(ctxReader{ctx, sr})
}

// openSmall opens a metadata entry, refusing one larger than
// maxMetadataSize.
func (ix *tarIndex) openSmall(name string) (*io.SectionReader, error) {
	_, sr, err := ix.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%d bytes, more than the %d MiB metadata may take", sr.Size(), maxMetadataSize>>20)
	}
	return sr, nil
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

const (
	// heldSmall and heldMetadata bound the entries a stream's first pass
	// keeps as they pass: the loader reads manifests and configs before it
	// knows which layers it needs. heldBudget bounds them all together.
	heldSmall    = 1 << 20
	heldMetadata = maxMetadataSize
	heldBudget   = 64 << 20
	// drainAfterEnd is how much of a stream is read past the end-of-archive
	// blocks, so a writer's record padding (GNU tar pads to 10 KiB) does not
	// meet a closed pipe; nothing more is read.
	drainAfterEnd = 64 << 10
)

// metadataNames are the archive entries a loader always reads first.
var metadataNames = map[string]bool{"manifest.json": true, "index.json": true, ocispec.ImageLayoutFile: true, "repositories": true}

// streamArchive indexes an archive that is not a plain tar in a regular
// file: a pipe, or a compressed file (gzip, bzip2, xz, zstd). Nothing is
// extracted. A first pass decompresses it and reads its headers, keeping
// the small entries metadata lives in; a stream that is no tar fails at its
// first block, and reading stops at the end blocks. The entries the
// manifests then reference are fetched by a second pass over the raw bytes
// (raw, or for a pipe an unlinked copy of what arrived, as large as what the
// sender sent). So an entry no manifest names is never written, however
// large it expands. An uncompressed pipe needs no second pass: its copy is
// the tar.
func (s *Store) streamArchive(ctx context.Context, r io.Reader, raw io.ReaderAt, rawSize int64) (*tarIndex, func(), error) {
	var files []*os.File
	done := func() {
		for _, f := range files {
			f.Close()
		}
	}
	temp := func() (*os.File, error) {
		f, err := unlinkedTemp(s.root)
		if err == nil {
			files = append(files, f)
		}
		return f, err
	}
	var in io.Reader = ctxReader{ctx, r}
	var copied *sparseWriter
	if raw == nil {
		f, err := temp()
		if err != nil {
			return nil, done, err
		}
		copied = &sparseWriter{f: f}
		in = io.TeeReader(in, copied)
	}
	br := bufio.NewReader(in)
	magic, _ := br.Peek(10)
	compressed := compression.Detect(magic) != compression.None
	held, err := temp()
	if err != nil {
		return nil, done, err
	}
	ix := &tarIndex{r: held, entries: map[string]*tarEntry{}}
	end, err := ix.firstPass(ctx, br, held, compressed)
	if err != nil {
		return nil, done, err
	}
	if copied != nil {
		if err := copied.finish(); err != nil {
			return nil, done, fmt.Errorf("archive: %w", err)
		}
		raw, rawSize = copied.f, copied.off
	}
	if !compressed {
		// The copy of the stream is the tar itself, every entry in it.
		ix.r = raw
		for _, e := range ix.entries {
			if e.typ == tar.TypeReg && e.off+e.size > rawSize {
				return nil, done, fmt.Errorf("archive: %w", io.ErrUnexpectedEOF)
			}
			e.held = true
		}
		return ix, done, nil
	}
	if err := held.Truncate(end); err != nil {
		return nil, done, err
	}
	want := ix.referenced(ctx)
	if len(want) == 0 {
		return ix, done, nil
	}
	dec, err := compression.NewReader(ctxReader{ctx, io.NewSectionReader(raw, 0, rawSize)})
	if err != nil {
		return nil, done, fmt.Errorf("archive: %w", err)
	}
	defer dec.Close()
	cr := &countReader{r: dec}
	tr := tar.NewReader(cr)
	for len(want) > 0 {
		h, err := tr.Next()
		if err != nil {
			return nil, done, fmt.Errorf("archive: second read: %w", err)
		}
		name := path.Clean(h.Name)
		e := ix.entries[name]
		if e == nil || !want[name] || e.off != cr.n {
			continue
		}
		if _, err := io.Copy(io.NewOffsetWriter(held, e.off), io.LimitReader(tr, e.size)); err != nil {
			return nil, done, fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
		e.held = true
		delete(want, name)
	}
	return ix, done, nil
}

// firstPass reads the decompressed tar from r, indexing its headers and,
// for a compressed archive, writing the small entries into held at their
// offsets. It returns the offset of the tar's end.
func (ix *tarIndex) firstPass(ctx context.Context, r io.Reader, held *os.File, compressed bool) (int64, error) {
	var dec io.Reader = r
	if compressed {
		d, err := compression.NewReader(r)
		if err != nil {
			return 0, fmt.Errorf("archive: %w", err)
		}
		defer d.Close()
		dec = d
	}
	cr := &countReader{r: dec}
	tr := tar.NewReader(cr)
	budget := int64(heldBudget)
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("archive: %w", err)
		}
		e, err := ix.add(h, cr.n)
		if err != nil {
			return 0, err
		}
		if !compressed || e == nil || e.typ != tar.TypeReg {
			continue
		}
		limit := int64(heldSmall)
		if metadataNames[path.Clean(h.Name)] {
			limit = heldMetadata
		}
		if e.size > limit || e.size > budget {
			continue // read over by the next Next, never written
		}
		if _, err := io.Copy(io.NewOffsetWriter(held, e.off), tr); err != nil {
			return 0, fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
		e.held, budget = true, budget-e.size
	}
	end := cr.n
	if _, err := io.CopyN(io.Discard, dec, drainAfterEnd); err != nil && err != io.EOF {
		return 0, fmt.Errorf("archive: %w", err)
	}
	return end, nil
}

// referenced names the entries the archive's manifests reference that the
// first pass did not keep: the layers, and any config or manifest too large
// to have been kept. Metadata that cannot be read is left for the loader to
// report.
func (ix *tarIndex) referenced(ctx context.Context) map[string]bool {
	want := map[string]bool{}
	need := func(name string) {
		if cur, e, err := ix.resolve(name); err == nil && e.typ == tar.TypeReg && !e.held {
			want[cur] = true
		}
	}
	if ix.entries["manifest.json"] != nil {
		var ms []dockerManifest
		if b, err := ix.readSmall(ctx, "manifest.json"); err != nil || json.Unmarshal(b, &ms) != nil {
			return want
		}
		for _, m := range ms {
			need(m.Config)
			for _, l := range m.Layers {
				need(l)
			}
		}
		return want
	}
	var idx struct {
		Manifests []struct{ Digest digest.Digest }
	}
	if b, err := ix.readSmall(ctx, "index.json"); err != nil || json.Unmarshal(b, &idx) != nil {
		return want
	}
	for _, md := range idx.Manifests {
		if ValidateDigest(md.Digest) != nil {
			continue
		}
		need(entry(md.Digest))
		var m struct {
			Config struct{ Digest digest.Digest }
			Layers []struct{ Digest digest.Digest }
		}
		if b, err := ix.readSmall(ctx, entry(md.Digest)); err != nil || json.Unmarshal(b, &m) != nil {
			continue
		}
		for _, d := range append([]struct{ Digest digest.Digest }{m.Config}, m.Layers...) {
			if ValidateDigest(d.Digest) == nil {
				need(entry(d.Digest))
			}
		}
	}
	return want
}

// unlinkedTemp is a temp file in dir that is unlinked at once: it never
// shows in the store, however the process ends.
func unlinkedTemp(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".tmp-load-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sparseWriter writes a stream to f, leaving holes where whole writes are
// zeros: an archive's padding and zero-filled entries cost no disk.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	if !allZero(p) {
		if _, err := w.f.WriteAt(p, w.off); err != nil {
			return 0, err
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}

// finish sets the file's size: a trailing hole has no bytes yet.
func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if binary.NativeEndian.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
