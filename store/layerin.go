package store

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
)

// AnnotationUncompressedSize records on a layer descriptor the size of the
// layer's uncompressed tar, so a docker-archive's layer.tar header can be
// written before the blob is decompressed into it.
const AnnotationUncompressedSize = "dev.snap.layer.uncompressed-size"

// layerScan is what reading a layer's tar tells.
type layerScan struct {
	diffID      digest.Digest
	size        int64 // bytes of the uncompressed tar
	contentSize int64 // as AnnotationContentSize
}

func (l layerScan) annotate(a map[string]string) map[string]string {
	a = maps.Clone(a)
	if a == nil {
		a = map[string]string{}
	}
	a[AnnotationContentSize] = strconv.FormatInt(l.contentSize, 10)
	a[AnnotationUncompressedSize] = strconv.FormatInt(l.size, 10)
	return a
}

// scanTar reads a whole uncompressed layer tar: every entry, so a truncated
// or corrupt one fails here, and what follows the end blocks, which counts
// in the diffID.
func scanTar(r io.Reader) (layerScan, error) {
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(r, h)}
	tr := tar.NewReader(cr)
	var s layerScan
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return s, fmt.Errorf("layer archive: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			s.contentSize += hdr.Size
		case tar.TypeSymlink:
			s.contentSize += int64(len(hdr.Linkname))
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return s, fmt.Errorf("layer archive %s: %w", hdr.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return s, fmt.Errorf("layer archive: %w", err)
	}
	s.diffID, s.size = digest.NewDigest(digest.SHA256, h), cr.n
	return s, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// AddLayer stores a layer tar from r (plain or compressed in any way
// compression.Detect recognises), recompressed as comp. Every entry is read, so a
// truncated or corrupt archive fails here and leaves no blob; nothing is
// extracted, so no entry can reach outside anything. It returns the blob's
// descriptor (annotated with the content and uncompressed sizes) and the
// layer's diffID. It stops with ctx's error once ctx is cancelled.
func (s *Store) AddLayer(ctx context.Context, r io.Reader, comp compression.Compression) (ocispec.Descriptor, digest.Digest, error) {
	return s.addLayer(ctx, r, comp, "")
}

// addLayer is AddLayer refusing, before its blob is committed, a layer
// whose content is not diffID ("": any).
func (s *Store) addLayer(ctx context.Context, r io.Reader, comp compression.Compression, diffID digest.Digest) (ocispec.Descriptor, digest.Digest, error) {
	dec, err := compression.NewReader(ctxReader{ctx, r})
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("layer archive: %w", err)
	}
	defer dec.Close()
	bw, err := s.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer bw.Abort()
	cw, err := compression.NewWriter(bw, comp)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	var out io.Writer = bw
	if cw != nil {
		out = cw
	}
	scan, err := scanTar(io.TeeReader(dec, out))
	if err != nil {
		compression.Abort(cw)
		return ocispec.Descriptor{}, "", err
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return ocispec.Descriptor{}, "", err
		}
	}
	if err := checkDiffID(scan.diffID, diffID); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d, err := bw.Commit()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return ocispec.Descriptor{
		MediaType:   comp.MediaType(),
		Digest:      d,
		Size:        bw.Size(),
		Annotations: scan.annotate(nil),
	}, scan.diffID, nil
}

// copyLayer stores a layer blob from r as it is (an OCI archive's), checking
// it against its descriptor and, decompressed, against the config's diffID.
// The blob is always written, so loading an image again repairs a corrupt
// copy the store holds. Its media type is what its bytes are, whatever the
// archive claims: umoci and skopeo read the store by media type.
func (s *Store) copyLayer(ctx context.Context, r io.Reader, l ocispec.Descriptor, diffID digest.Digest) (ocispec.Descriptor, error) {
	if _, err := s.BlobPath(l.Digest); err != nil {
		return ocispec.Descriptor{}, err
	}
	bw, err := s.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer bw.Abort()
	br := bufio.NewReader(io.TeeReader(ctxReader{ctx, r}, bw))
	magic, _ := br.Peek(10)
	switch c := compression.Detect(magic); c {
	case compression.None, compression.Gzip, compression.Zstd:
		l.MediaType = c.MediaType()
	default:
		return ocispec.Descriptor{}, fmt.Errorf("compressed in a way OCI layers cannot be (bzip2 or xz)")
	}
	_, scan, err := scanBlob(br)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	// The blob writer is the stream's one hasher.
	if err := checkContent(l.Digest, l.Size, bw.Digest(), bw.Size()); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := checkDiffID(scan.diffID, diffID); err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := bw.Commit(); err != nil {
		return ocispec.Descriptor{}, err
	}
	// The sizes are measured, never taken from the archive: save writes
	// tar headers from them.
	l.Annotations = scan.annotate(l.Annotations)
	return l, nil
}

// AddLayerBlob stores a layer blob read from r as it is (a registry's), the
// way an OCI archive's layers are stored: r must be exactly l's bytes (digest
// and size) and, decompressed, the layer diffID; otherwise nothing is kept.
// The returned descriptor has the media type the bytes are and the sizes
// history and save need. The caller holds a Lease until an image reaches
// the blob.
func (s *Store) AddLayerBlob(ctx context.Context, r io.Reader, l ocispec.Descriptor, diffID digest.Digest) (ocispec.Descriptor, error) {
	if err := ValidateDigest(diffID); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer diffID: %w", err)
	}
	return s.copyLayer(ctx, r, l, diffID)
}

// HasBlob reports whether the store holds the blob d (its content is
// checked when it is read).
func (s *Store) HasBlob(d digest.Digest) bool {
	p, err := s.BlobPath(d)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// LayerDescriptor is the descriptor an image of this store gives the layer
// blob d (with diffID), annotated with its sizes: taken from an image that
// has it, else measured by reading the blob, which is then checked against
// d and diffID.
func (s *Store) LayerDescriptor(ctx context.Context, d, diffID digest.Digest) (ocispec.Descriptor, error) {
	if imgs, err := s.Images(); err == nil {
		for _, img := range imgs {
			if img.Err != nil {
				continue
			}
			for i, l := range img.Manifest.Layers {
				if l.Digest == d && i < len(img.Config.RootFS.DiffIDs) && img.Config.RootFS.DiffIDs[i] == diffID &&
					l.Annotations[AnnotationUncompressedSize] != "" {
					return l, nil
				}
			}
		}
	}
	rc, err := s.OpenBlob(d)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer rc.Close()
	fi, err := os.Stat(filepath.Join(s.blobDir(), d.Encoded()))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	c, scan, err := scanBlob(bufio.NewReader(ctxReader{ctx, rc}))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", d, err)
	}
	if err := checkDiffID(scan.diffID, diffID); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", d, err)
	}
	return ocispec.Descriptor{MediaType: c.MediaType(), Digest: d, Size: fi.Size(), Annotations: scan.annotate(nil)}, nil
}

// scanBlob reads a layer blob to its very end (where a reader that checks
// its digest does so): how it is compressed and what its tar holds.
func scanBlob(br *bufio.Reader) (compression.Compression, layerScan, error) {
	magic, _ := br.Peek(10)
	c := compression.Detect(magic)
	dec, err := compression.NewReader(br)
	if err != nil {
		return c, layerScan{}, err
	}
	scan, err := scanTar(dec)
	dec.Close()
	if err != nil {
		return c, scan, err
	}
	_, err = io.Copy(io.Discard, br) // what the decompressor left
	return c, scan, err
}

// CompressBlob stores the blob plain (an uncompressed layer) compressed as
// comp and returns the new blob's descriptor. The writers are deterministic:
// the same blob compresses to the same digest every time. The caller holds
// a Lease until an image or a push no longer needs the new blob.
func (s *Store) CompressBlob(ctx context.Context, plain digest.Digest, comp compression.Compression) (ocispec.Descriptor, error) {
	rc, err := s.OpenBlob(plain)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer rc.Close()
	bw, err := s.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer bw.Abort()
	cw, err := compression.NewWriter(bw, comp)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if cw == nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s: compress as %q: no compression", plain, comp)
	}
	if _, err := io.Copy(cw, ctxReader{ctx, rc}); err != nil {
		compression.Abort(cw)
		return ocispec.Descriptor{}, err
	}
	if err := cw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := bw.Commit()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: comp.MediaType(), Digest: d, Size: bw.Size()}, nil
}
