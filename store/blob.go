package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
)

// BlobWriter writes one blob to a temp file in ROOT/ingest; Commit moves it
// to its content address. Until then, and after Abort, the store is
// unchanged. In-flight blobs live outside blobs/sha256 so that the OCI layout
// only ever holds content, and so that Prune, holding the GC lock (no writer
// in flight), can take everything in ingest/ as a killed writer's.
// The writer's caller holds a Lease until the blob is reachable.
type BlobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a blob.
func (s *Store) NewBlob() (*BlobWriter, error) {
	f, err := os.CreateTemp(s.ingestDir(), "blob-*")
	if errors.Is(err, fs.ErrNotExist) { // a store made before ingest/ existed
		if err = s.mkIngest(); err == nil {
			f, err = os.CreateTemp(s.ingestDir(), "blob-*")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Digest is the digest of what was written so far.
func (w *BlobWriter) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, w.h) }

// Size is the number of bytes written.
func (w *BlobWriter) Size() int64 { return w.n }

// Commit syncs the blob and renames it to blobs/sha256/<digest>, replacing
// a blob already there (the same bytes, or a corrupt copy this one heals).
func (w *BlobWriter) Commit() (digest.Digest, error) {
	d := w.Digest()
	defer w.Abort()
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	p, err := w.s.BlobPath(d)
	if err != nil {
		return "", err
	}
	if err := os.Rename(w.f.Name(), p); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	w.done = true
	if err := syncDir(w.s.blobDir()); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	return d, nil
}

// Abort drops an uncommitted blob; it is safe to call after Commit.
func (w *BlobWriter) Abort() {
	w.f.Close()
	if !w.done {
		os.Remove(w.f.Name())
	}
}

// PutBlob stores b and returns its digest. A copy already there is kept if
// it is intact and replaced if it is corrupt, so storing an image again
// repairs it.
func (s *Store) PutBlob(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if _, err := s.ReadBlob(d); err == nil {
		return d, nil
	}
	w, err := s.NewBlob()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return "", err
	}
	return w.Commit()
}

// ReadBlob reads a whole blob and checks it against its digest: a mismatch
// is ErrCorrupt, a missing blob ErrNotFound.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	rc, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// OpenBlob streams a blob; the reader fails at the end if the content does
// not match the digest, so a consumer never silently uses a corrupt blob.
func (s *Store) OpenBlob(d digest.Digest) (io.ReadCloser, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{newVerifyReader(f, "blob", d, -1), f}, nil
}

// verifyReader passes r on and, at its end, fails if what came through is
// not d, or not size bytes (size < 0: any): the one reader that checks
// content against its digest, for the store's blobs and an archive's.
// d's algorithm must be available (the digest validated).
type verifyReader struct {
	r    io.Reader
	what string // names the content in the error, with d
	d    digest.Digest
	size int64
	h    digest.Digester
	n    int64
}

func newVerifyReader(r io.Reader, what string, d digest.Digest, size int64) *verifyReader {
	return &verifyReader{r: r, what: what, d: d, size: size, h: d.Algorithm().Digester()}
}

func (r *verifyReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Hash().Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		if verr := checkContent(r.d, r.size, r.h.Digest(), r.n); verr != nil {
			return n, fmt.Errorf("%s %s is %w", r.what, r.d, verr)
		}
	}
	return n, err
}

// checkContent is the one check of content (hashed to got, n bytes)
// against its digest and, when size >= 0, its size: a mismatched digest is
// ErrCorrupt.
func checkContent(d digest.Digest, size int64, got digest.Digest, n int64) error {
	if got != d {
		return fmt.Errorf("%w: its content hashes to %s", ErrCorrupt, got)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%d bytes, its descriptor says %d", n, size)
	}
	return nil
}
