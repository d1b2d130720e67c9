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

// BlobWriter writes one blob to a temp file in the store; Commit moves it to
// its content address. Until then, and after Abort, the store is unchanged.
type BlobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a blob.
func (s *Store) NewBlob() (*BlobWriter, error) {
	f, err := os.CreateTemp(s.blobDir(), ".tmp-blob-*")
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

// Commit syncs the blob and renames it to blobs/sha256/<digest>. A blob
// already present is kept (content addressing makes them the same bytes).
func (w *BlobWriter) Commit() (digest.Digest, error) {
	d := w.Digest()
	defer w.Abort()
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.s.BlobPath(d)); err != nil {
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

// PutBlob stores b and returns its digest.
func (s *Store) PutBlob(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if _, err := os.Stat(s.BlobPath(d)); err == nil {
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

// ReadBlob reads a whole blob and checks it against its digest.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	b, err := os.ReadFile(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s is corrupt: its content hashes to %s", d, got)
	}
	return b, nil
}

// OpenBlob streams a blob; the reader fails at the end if the content does
// not match the digest, so a consumer never silently uses a corrupt blob.
func (s *Store) OpenBlob(d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &verifyReader{f: f, d: d, v: d.Verifier()}, nil
}

type verifyReader struct {
	f *os.File
	d digest.Digest
	v digest.Verifier
}

func (r *verifyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.v.Write(p[:n])
	if err == io.EOF && !r.v.Verified() {
		return n, fmt.Errorf("blob %s is corrupt: its content does not match its digest", r.d)
	}
	return n, err
}

func (r *verifyReader) Close() error { return r.f.Close() }
