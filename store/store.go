// Package store is snap's image store: an OCI image layout (oci-layout,
// index.json, blobs/sha256/) that skopeo and umoci read as it is. Blobs are
// content-addressed and written atomically; the index changes only under a
// file lock, so concurrent commits into one store all land; tags are index
// entries annotated org.opencontainers.image.ref.name with "repo:tag".
package store

import (
	"context"
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
	// ctx bounds the waits for the store's locks of the calls that take no
	// context of their own (Images, Lookup, Tag, Remove, Update...): a
	// signalled command must not sit behind a long prune, then change the
	// index after all. A Store is one command's handle on the layout.
	ctx context.Context
}

var (
	// ErrNotFound is returned (wrapped) for unknown images and blobs.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt is returned (wrapped) for a blob whose content does not
	// match its digest, and for a manifest or config that is not one.
	ErrCorrupt = errors.New("corrupt")
	// ErrInvalidDigest is returned (wrapped) for a digest that is not
	// sha256:<64 hex>: only such a digest ever becomes a path.
	ErrInvalidDigest = errors.New("invalid digest")
)

// Open opens the store at root, creating an empty layout if there is none.
func Open(root string) (*Store, error) { return OpenContext(context.Background(), root) }

// OpenContext is Open whose lock waits, and whose index updates, end when
// ctx does.
func OpenContext(ctx context.Context, root string) (*Store, error) {
	s := &Store{root: root, ctx: ctx}
	if err := os.MkdirAll(s.blobDir(), 0o755); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if err := s.mkIngest(); err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, ocispec.ImageLayoutFile)); errors.Is(err, fs.ErrNotExist) {
		// Under a lease: a prune running now would take the layout's temp
		// file for a killed writer's.
		lease, err := s.Lease(s.ctx)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		err = WriteFileAtomic(filepath.Join(root, ocispec.ImageLayoutFile), b)
		lease.Release()
		if err != nil {
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

func (s *Store) blobDir() string    { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) indexPath() string  { return filepath.Join(s.root, ocispec.ImageIndexFile) }
func (s *Store) ingestDir() string  { return filepath.Join(s.root, "ingest") }
func (s *Store) gcLockPath() string { return filepath.Join(s.root, "gc.lock") }

// LayersDir holds the unpacked layers, each at LayerPath. snap's own
// overlay mounts may name their lowers relative to it.
func (s *Store) LayersDir() string { return filepath.Join(s.root, "layers") }

// mkIngest makes the directory of in-flight writes. It is private (as
// layers/ is): a half-unpacked layer holds the image's setuid files.
func (s *Store) mkIngest() error { return os.MkdirAll(s.ingestDir(), 0o700) }

// BlobPath is where the blob d lives. Digests come from manifests, indexes
// and archives, so d is checked first: only sha256:<64 lowercase hex>
// becomes a path (sha256:../../etc/passwd is refused, never joined).
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	if err := ValidateDigest(d); err != nil {
		return "", err
	}
	return filepath.Join(s.blobDir(), d.Encoded()), nil
}

// ValidateDigest accepts only what the store can hold: sha256 and 64
// lowercase hex digits.
func ValidateDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w: %v", d, ErrInvalidDigest, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %q: %w: only sha256 blobs are stored", d, ErrInvalidDigest)
	}
	return nil
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
	unlock, err := s.lockIndex()
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.ctx.Err(); err != nil {
		return err // cancelled while it waited: the index stays as it was
	}
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
	if err := WriteFileAtomic(s.indexPath(), b); err != nil {
		return fmt.Errorf("store index: %w", err)
	}
	return nil
}

// lockIndex takes the index lock. Whoever also needs the GC lock takes that
// one first (see Lease): one order everywhere, so no two can deadlock.
func (s *Store) lockIndex() (unlock func(), err error) {
	lock, err := os.OpenFile(filepath.Join(s.root, "index.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store lock: %w", err)
	}
	if err := flockContext(s.ctx, lock, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("store lock: %w", err) // lock is flockContext's now
	}
	return func() { lock.Close() }, nil
}

// WriteFileAtomic writes b to path through a temp file, fsync and rename,
// then syncs the directory so the rename itself survives a crash.
func WriteFileAtomic(path string, b []byte) error {
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

// A Lease keeps Prune away while its holder writes: blobs being written
// (in ROOT/ingest) and blobs written but not yet reachable from the index
// are invisible to the index, so without it a prune takes them from under a
// commit and the commit then tags an image whose blobs are gone.
//
// It is containerd's lease reduced to a file lock: every writer holds
// ROOT/gc.lock shared (flock LOCK_SH) from its first temp file until the
// index update that makes its blobs reachable; Prune holds it exclusive. A
// killed writer's lock dies with it, so nothing is ever held forever and
// whatever it left in ingest/ belongs to nobody: the next prune takes it.
//
// Leases nest (a commit holds one and LayerDirs and Put take their own):
// Linux grants a shared flock even while an exclusive one waits, so an
// inner lease never waits for a prune that waits for the outer one. The
// order is always the GC lock first, then the index lock (Update).
type Lease struct {
	f *os.File
}

// Lease takes a lease on the store. It waits while a prune runs, as long as
// ctx allows. Release it when the index reaches what was written (or when
// the write is abandoned).
func (s *Store) Lease(ctx context.Context) (*Lease, error) {
	f, err := os.OpenFile(s.gcLockPath(), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store lease: %w", err)
	}
	if err := flockContext(ctx, f, unix.LOCK_SH); err != nil {
		return nil, fmt.Errorf("store lease: %w", err)
	}
	return &Lease{f: f}, nil
}

// Release ends the lease. It may be called more than once, and on nil.
func (l *Lease) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
}

// gcLock takes the GC lock exclusively: it waits for every lease in flight
// to end, as long as ctx allows. flock has no writer preference, so new
// leases keep coming in while it waits; it gets the lock at the first
// moment with none, which between commits (seconds each) comes soon.
func (s *Store) gcLock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(s.gcLockPath(), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store gc lock: %w", err)
	}
	if err := flockContext(ctx, f, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("store gc lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// flockContext takes a flock on f, giving up when ctx ends. flock(2) itself
// cannot be cancelled, so the wait runs in a goroutine; when ctx ends first
// that goroutine keeps f and closes it (dropping the lock it gets too late).
// On error f is no longer the caller's.
func flockContext(ctx context.Context, f *os.File, how int) error {
	fd := int(f.Fd())
	err := unix.Flock(fd, how|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return err
	}
	if err := ctx.Err(); err != nil {
		f.Close() // ended already: no wait left behind
		return err
	}
	done := make(chan error, 1)
	go func() { done <- flockWait(f, how) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-done
			f.Close()
		}()
		return ctx.Err()
	}
}

// flockWait waits for a flock; a signal handler interrupting the wait does
// not end it.
func flockWait(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
