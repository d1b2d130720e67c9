package store

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"

	"github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/diff"
)

// AddLayer stores a layer tar from r (plain or compressed in any way
// go-archive recognises), recompressed as comp. Every entry is read, so a
// truncated or corrupt archive fails here and leaves no blob; nothing is
// extracted, so no entry can reach outside anything. It returns the blob's
// descriptor (annotated with the content size) and the layer's diffID.
func (s *Store) AddLayer(r io.Reader, comp diff.Compression) (ocispec.Descriptor, digest.Digest, error) {
	dec, err := compression.DecompressStream(r)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("layer archive: %w", err)
	}
	defer dec.Close()
	bw, err := s.NewBlob()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer bw.Abort()
	cw, err := diff.NewCompressor(bw, comp)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	var out io.Writer = bw
	if cw != nil {
		out = cw
	}
	h := sha256.New()
	tee := io.TeeReader(dec, io.MultiWriter(h, out))
	tr := tar.NewReader(tee)
	var size int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("layer archive: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			size += hdr.Size
		case tar.TypeSymlink:
			size += int64(len(hdr.Linkname))
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("layer archive %s: %w", hdr.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("layer archive: %w", err)
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return ocispec.Descriptor{}, "", err
		}
	}
	d, err := bw.Commit()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	return ocispec.Descriptor{
		MediaType:   comp.MediaType(),
		Digest:      d,
		Size:        bw.Size(),
		Annotations: map[string]string{AnnotationContentSize: strconv.FormatInt(size, 10)},
	}, digest.NewDigest(digest.SHA256, h), nil
}
