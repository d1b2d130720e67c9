package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"snap/compression"
)

// Distribution is what the store remembers of registries, as docker's
// distribution metadata (v2metadata-by-diffid) does: which compressed blob
// a layer stored uncompressed became when it was pushed, so the next push
// of that layer asks the registry for the blob before compressing anything
// again; and which repositories hold a blob, so a push to another
// repository of the same registry mounts it instead of sending it.
//
// It is a cache: losing it costs a compression or an upload, never
// correctness, so it lives beside the layout (ROOT/distribution.json) and
// Prune does not touch it.
type Distribution struct {
	// Compressed maps "DIFFID COMPRESSION" to the blob that layer became.
	Compressed map[string]ocispec.Descriptor `json:"compressed,omitempty"`
	// Repos maps a blob digest to the repositories ("registry/repo", as
	// go-containerregistry names them) that hold it, latest last.
	Repos map[digest.Digest][]string `json:"repos,omitempty"`
}

// maxReposPerBlob bounds each blob's list: a mount needs one repository.
const maxReposPerBlob = 8

func compressedKey(diffID digest.Digest, c compression.Compression) string {
	return diffID.String() + " " + string(c)
}

// CompressedAs is the blob the layer diffID became compressed as c, if the
// store remembers one.
func (d *Distribution) CompressedAs(diffID digest.Digest, c compression.Compression) (ocispec.Descriptor, bool) {
	desc, ok := d.Compressed[compressedKey(diffID, c)]
	return desc, ok && ValidateDigest(desc.Digest) == nil
}

// SetCompressed remembers that the layer diffID compressed as c is blob.
func (d *Distribution) SetCompressed(diffID digest.Digest, c compression.Compression, blob ocispec.Descriptor) {
	if d.Compressed == nil {
		d.Compressed = map[string]ocispec.Descriptor{}
	}
	d.Compressed[compressedKey(diffID, c)] = ocispec.Descriptor{MediaType: blob.MediaType, Digest: blob.Digest, Size: blob.Size}
}

// AddRepo remembers that repo holds blob.
func (d *Distribution) AddRepo(blob digest.Digest, repo string) {
	if d.Repos == nil {
		d.Repos = map[digest.Digest][]string{}
	}
	rs := slices.DeleteFunc(d.Repos[blob], func(r string) bool { return r == repo })
	rs = append(rs, repo)
	if len(rs) > maxReposPerBlob {
		rs = rs[len(rs)-maxReposPerBlob:]
	}
	d.Repos[blob] = rs
}

func (s *Store) distributionPath() string { return filepath.Join(s.root, "distribution.json") }

// Distribution reads what the store remembers of registries. A missing or
// unreadable file is an empty memory: it is only a cache.
func (s *Store) Distribution() *Distribution {
	var d Distribution
	if b, err := os.ReadFile(s.distributionPath()); err == nil {
		if json.Unmarshal(b, &d) != nil {
			d = Distribution{}
		}
	}
	return &d
}

// UpdateDistribution changes what the store remembers of registries, under
// a lock of its own so that two pushes at once both land.
func (s *Store) UpdateDistribution(fn func(*Distribution)) error {
	lock, err := os.OpenFile(filepath.Join(s.root, "distribution.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("store distribution: %w", err)
	}
	if err := flockContext(s.ctx, lock, unix.LOCK_EX); err != nil {
		return fmt.Errorf("store distribution: %w", err)
	}
	defer lock.Close()
	// A lease: a prune takes every .tmp- file it finds as a dead writer's.
	lease, err := s.Lease(s.ctx)
	if err != nil {
		return err
	}
	defer lease.Release()
	d := s.Distribution()
	was, _ := json.Marshal(d)
	fn(d)
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if bytes.Equal(b, was) {
		return nil // a push of what the registry had: nothing new to remember
	}
	// Renamed into place but not synced: it is a cache, and a crash that
	// loses it (or leaves it empty, read as no memory) costs a compression
	// or an upload, while two fsyncs cost every push of a small image.
	f, err := os.CreateTemp(s.root, ".tmp-distribution-*")
	if err != nil {
		return fmt.Errorf("store distribution: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.distributionPath())
	}
	if err != nil {
		return fmt.Errorf("store distribution: %w", err)
	}
	return nil
}
