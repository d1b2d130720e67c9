// Package store is snap's image store: an OCI image layout (oci-layout,
// index.json, blobs/sha256/) that skopeo and umoci read as it is. Blobs are
// content-addressed and written atomically; the index changes only under a
// file lock, so concurrent commits into one store all land; tags are index
// entries annotated org.opencontainers.image.ref.name with "repo:tag".
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Store is an OCI image layout on disk.
type Store struct {
	root string
}

// ErrNotFound is returned (wrapped) for unknown images and blobs.
var ErrNotFound = errors.New("not found")

// Open opens the store at root, creating an empty layout if there is none.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	if err := os.MkdirAll(s.blobDir(), 0o755); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, ocispec.ImageLayoutFile)); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(filepath.Join(root, ocispec.ImageLayoutFile), b); err != nil {
			return nil, fmt.Errorf("store %s: %w", root, err)
		}
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, fs.ErrNotExist) {
		if err := s.Update(func(*ocispec.Index) error { return nil }); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Root is the layout's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobDir() string   { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) indexPath() string { return filepath.Join(s.root, ocispec.ImageIndexFile) }
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// Index reads index.json.
func (s *Store) Index() (*ocispec.Index, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return &ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store index: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("store index %s: %w", s.indexPath(), err)
	}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	return &idx, nil
}

// Update changes index.json under an exclusive lock: fn sees the current
// index and may change it; the result replaces the file atomically. If fn
// fails, nothing is written.
func (s *Store) Update(fn func(*ocispec.Index) error) error {
	lock, err := os.OpenFile(filepath.Join(s.root, "index.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("store lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("store lock: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	idx, err := s.Index()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.indexPath(), b); err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path through a temp file, fsync and rename,
// then syncs the directory so the rename itself survives a crash.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
