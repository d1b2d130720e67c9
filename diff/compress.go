package diff

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a layer blob is compressed.
type Compression string

const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// ParseCompression reads a --compression value.
func ParseCompression(s string) (Compression, error) {
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

// NewCompressor returns a writer compressing into w as c says, nil for None.
// The output is the same for the same input on any machine.
func NewCompressor(w io.Writer, c Compression) (io.WriteCloser, error) { return compressor(w, c) }

func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
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

// AbortCompressor ends a compressor whose output is void, so that none of
// its goroutines outlives the failed layer. pgzip's Close returns early once
// its sink has failed and leaves its writer goroutine waiting for blocks
// (pgzip v1.3.0); Reset closes that channel and waits for it.
func AbortCompressor(c io.WriteCloser) {
	switch c := c.(type) {
	case nil:
	case *pgzip.Writer:
		c.Reset(io.Discard)
	default:
		c.Close()
	}
}
