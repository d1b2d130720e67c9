// Package compression is how layer blobs are compressed: the kinds snap
// writes and their OCI media types, deterministic writers, and readers that
// take whatever docker load takes. It imports nothing of snap's, so the
// store and the layer writer can both use it.
package compression

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	archive "github.com/moby/go-archive/compression"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a layer blob is compressed.
type Compression string

// None, Gzip and Zstd are what an OCI layer can be, and what snap writes.
// Bzip2 and Xz are only read (docker load takes them); Detect reports them.
const (
	None  Compression = "none"
	Gzip  Compression = "gzip"
	Zstd  Compression = "zstd"
	Bzip2 Compression = "bzip2"
	Xz    Compression = "xz"
)

// Parse reads a --compression value.
func Parse(s string) (Compression, error) {
	switch c := Compression(s); c {
	case None, Gzip, Zstd:
		return c, nil
	case "":
		return None, nil
	}
	return "", fmt.Errorf("unknown compression %q (want none, gzip or zstd)", s)
}

// MediaType is the OCI layer media type for blobs compressed this way.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

// gzipBlock is fixed so that the blob is the same whatever the number of CPUs:
// pgzip compresses each block on its own.
const gzipBlock = 1 << 20

// NewWriter returns a writer compressing into w as c says, nil for None.
// The output is the same for the same input on any machine.
func NewWriter(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None, "":
		return nil, nil
	case Gzip:
		gz, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if err := gz.SetConcurrency(gzipBlock, 2*runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		return gz, nil
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// Abort ends a writer of NewWriter whose output is void, so that none of
// its goroutines outlives the failed blob. pgzip's Close returns early once
// its sink has failed and leaves its writer goroutine waiting for blocks
// (pgzip v1.3.0); Reset closes that channel and waits for it.
func Abort(c io.WriteCloser) {
	switch c := c.(type) {
	case nil:
	case *pgzip.Writer:
		c.Reset(io.Discard)
	default:
		c.Close()
	}
}

// Detect tells how a stream that starts with magic (its first 10 bytes
// are enough) is compressed: None when it is no compressed stream known.
func Detect(magic []byte) Compression {
	switch archive.Detect(magic) {
	case archive.Gzip:
		return Gzip
	case archive.Zstd:
		return Zstd
	case archive.Bzip2:
		return Bzip2
	case archive.Xz:
		return Xz
	}
	return None
}

// NewReader decompresses r, compressed in any way Detect knows or not at
// all, as docker load does (with unpigz for gzip when it is installed).
func NewReader(r io.Reader) (io.ReadCloser, error) { return archive.DecompressStream(r) }
