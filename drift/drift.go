package drift

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/store"
)

// LayerError is Compare's error about one layer of one image: a layer it
// cannot read, or an entry it refuses (wrapping ErrUnsafeEntry when the
// entry would reach outside the root).
type LayerError struct {
	Image string        // the image's name, as store.Image.Name gives it
	Layer digest.Digest // the layer's blob
	Entry string        // the entry's name as the tar has it; "" when the error is not one entry's
	Err   error
}

func (e *LayerError) Error() string {
	s := "image " + e.Image + ": layer " + e.Layer.String()
	if e.Entry != "" {
		s += ": entry " + strconv.Quote(e.Entry)
	}
	return s + ": " + e.Err.Error()
}

func (e *LayerError) Unwrap() error { return e.Err }

// Compare lists what differs from image a to image b: Added, Changed and
// Deleted paths of b's filesystem against a's, sorted by path. It applies
// each image's layers in order to a tree of their tar headers (whiteouts
// and opaque directories as the applier treats them) and compares the
// trees; the only file data it reads is that of regular files whose
// headers match entry for entry but whose data lies in different layers,
// hashed, so an edit of the same size within the same second is found.
// Layers the two images share as a common prefix (the same diff_id at the
// same index) are read once and their files' data never: a file both got
// from there is the same file.
//
// As docker diff does, a deleted directory is one D line (not one per path
// beneath it), a directory replaced by a file one C line; a directory is
// listed as C when its own entry changed.
func Compare(ctx context.Context, st *store.Store, a, b *store.Image) ([]Change, error) {
	return (&comparer{st: st}).compare(ctx, a, b)
}

// layer is one layer of the comparer's table.
type layer struct {
	img    *store.Image // the image it is named by in errors
	desc   ocispec.Descriptor
	diffID digest.Digest
}

type comparer struct {
	st     *store.Store
	layers []layer
	// hashed, when set, is told of each file's data hashed: tests prove
	// with it what is never read.
	hashed func(layer digest.Digest, n int64)
}

// candidate is a change that is one only if the contents differ.
type candidate struct {
	ch   Change
	a, b contentRef
}

func (c *comparer) compare(ctx context.Context, a, b *store.Image) ([]Change, error) {
	for _, img := range []*store.Image{a, b} {
		if n, m := len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs); n != m {
			return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", img.Name(), n, m)
		}
	}
	da, db := a.Config.RootFS.DiffIDs, b.Config.RootFS.DiffIDs
	if slices.Equal(da, db) {
		return nil, nil // the same layers: the same filesystem
	}
	shared := 0
	for shared < len(da) && shared < len(db) && da[shared] == db[shared] {
		shared++
	}
	add := func(img *store.Image, from int) (idx []int) {
		for i := from; i < len(img.Manifest.Layers); i++ {
			idx = append(idx, len(c.layers))
			c.layers = append(c.layers, layer{img: img, desc: img.Manifest.Layers[i], diffID: img.Config.RootFS.DiffIDs[i]})
		}
		return idx
	}
	// The table: the shared layers (read from a's blobs), a's own, b's own.
	// Each tree's layers come in increasing index, as opaque needs.
	var sharedIdx []int
	for i := range shared {
		sharedIdx = append(sharedIdx, len(c.layers))
		c.layers = append(c.layers, layer{img: a, desc: a.Manifest.Layers[i], diffID: da[i]})
	}
	ownA, ownB := add(a, shared), add(b, shared)

	ta, tb := newRoot(), newRoot()
	for _, li := range sharedIdx {
		err := c.scan(ctx, li, func(ord int, h *tar.Header, _ io.Reader) error {
			if err := apply(ta, li, ord, h); err != nil {
				return err
			}
			return apply(tb, li, ord, h)
		})
		if err != nil {
			return nil, err
		}
	}
	for _, own := range []struct {
		t   *node
		idx []int
	}{{ta, ownA}, {tb, ownB}} {
		for _, li := range own.idx {
			err := c.scan(ctx, li, func(ord int, h *tar.Header, _ io.Reader) error {
				return apply(own.t, li, ord, h)
			})
			if err != nil {
				return nil, err
			}
		}
	}

	var out []Change
	var cands []candidate
	walk("", ta, tb, &out, &cands)
	if len(cands) > 0 {
		sums, err := c.hash(ctx, cands)
		if err != nil {
			return nil, err
		}
		for _, cd := range cands {
			if sums[cd.a] != sums[cd.b] {
				out = append(out, cd.ch)
			}
		}
	}
	slices.SortFunc(out, func(x, y Change) int { return strings.Compare(x.Path, y.Path) })
	return out, nil
}

// walk compares the directories a and b at p ("" for the root).
func walk(p string, a, b *node, out *[]Change, cands *[]candidate) {
	for name, nb := range b.kids {
		q := p + "/" + name
		na := a.kids[name]
		if na == nil {
			addAll(q, nb, out)
			continue
		}
		ea, eb := na.e, nb.e
		ch := Change{Kind: Changed, Path: q, Type: typeName(eb), Size: fileSize(eb), OldSize: fileSize(ea)}
		switch {
		case !sameMeta(ea, eb):
			*out = append(*out, ch)
		case eb.typ == tar.TypeReg && eb.size > 0 && ea.content != eb.content:
			*cands = append(*cands, candidate{ch: ch, a: ea.content, b: eb.content})
		}
		switch {
		case nb.kids == nil:
			// A directory replaced by a file is one C, as docker diff
			// lists it: what was beneath goes with it.
		case na.kids == nil:
			for name, k := range nb.kids {
				addAll(q+"/"+name, k, out)
			}
		default:
			walk(q, na, nb, out, cands)
		}
	}
	for name, na := range a.kids {
		if b.kids[name] == nil {
			*out = append(*out, Change{Kind: Deleted, Path: p + "/" + name, Type: typeName(na.e), Size: NoSize, OldSize: fileSize(na.e)})
		}
	}
}

// addAll lists n at p and everything beneath it as added.
func addAll(p string, n *node, out *[]Change) {
	*out = append(*out, Change{Kind: Added, Path: p, Type: typeName(n.e), Size: fileSize(n.e), OldSize: NoSize})
	for name, k := range n.kids {
		addAll(p+"/"+name, k, out)
	}
}

// hash reads the data of the candidates' files: each layer that holds any
// once, hashing only those entries.
func (c *comparer) hash(ctx context.Context, cands []candidate) (map[contentRef][sha256.Size]byte, error) {
	need := map[int]map[int]bool{}
	for _, cd := range cands {
		for _, r := range []contentRef{cd.a, cd.b} {
			if need[r.layer] == nil {
				need[r.layer] = map[int]bool{}
			}
			need[r.layer][r.ord] = true
		}
	}
	sums := map[contentRef][sha256.Size]byte{}
	for li := range c.layers {
		ords := need[li]
		if ords == nil {
			continue
		}
		err := c.scan(ctx, li, func(ord int, _ *tar.Header, data io.Reader) error {
			if !ords[ord] {
				return nil
			}
			h := sha256.New()
			n, err := io.Copy(h, ctxReader{ctx, data})
			if err != nil {
				return err
			}
			if c.hashed != nil {
				c.hashed(c.layers[li].desc.Digest, n)
			}
			sums[contentRef{li, ord}] = [sha256.Size]byte(h.Sum(nil))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return sums, nil
}

// scan reads layer li's tar, decompressed, calling fn for each header with
// its entry number and data; the store checks the blob against its digest,
// scan the tar against the layer's diff_id (what a shared prefix is judged
// by).
func (c *comparer) scan(ctx context.Context, li int, fn func(ord int, h *tar.Header, data io.Reader) error) error {
	l := c.layers[li]
	fail := func(entry string, err error) error {
		return &LayerError{Image: l.img.Name(), Layer: l.desc.Digest, Entry: entry, Err: err}
	}
	rc, err := c.st.OpenBlob(l.desc.Digest)
	if err != nil {
		return fail("", err)
	}
	defer rc.Close()
	dec, err := compression.NewReader(ctxReader{ctx, rc})
	if err != nil {
		return fail("", err)
	}
	defer dec.Close()
	dh := sha256.New()
	tee := io.TeeReader(dec, dh)
	tr := tar.NewReader(tee)
	last := ""
	for ord := 0; ; ord++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last == "" {
				return fail("", fmt.Errorf("entry #%d: %w", ord+1, err))
			}
			return fail("", fmt.Errorf("entry #%d (after %q): %w", ord+1, last, err))
		}
		if err := fn(ord, h, tr); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fail(h.Name, err)
		}
		last = h.Name
	}
	// The end blocks and what follows count in the diff_id, and the
	// blob's own check runs at its end.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fail("", err)
	}
	if _, err := io.Copy(io.Discard, ctxReader{ctx, rc}); err != nil {
		return fail("", err)
	}
	if got := digest.NewDigest(digest.SHA256, dh); got != l.diffID {
		return fail("", fmt.Errorf("%w: its content is %s, the image says %s", store.ErrCorrupt, got, l.diffID))
	}
	return nil
}

// ctxReader ends a read once ctx is done: a large layer must not keep a
// cancelled diff going.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
