package store

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// FlatDir returns a directory holding the merged view of the layers whose
// chain ID is chainID (the bottom layers of an image, whiteouts and opaque
// directories applied): one lower standing for many, for images deeper
// than overlayfs stacks. It is a cache beside the unpacked layers
// (ROOT/flat/<chainID>), made once by fill and shared by every image whose
// layers start with that chain; the layers themselves stay as they are.
// Prune takes it when no image of the index starts with the chain and no
// mounted overlay uses it.
//
// fill gets an empty directory and must leave the merged view in it; the
// directory then moves into place whole, by one rename. It lives in a
// private directory of ROOT/ingest (where a prune takes it if the process
// dies), whose other entries fill may use as scratch space.
func (s *Store) FlatDir(chainID digest.Digest, fill func(dir string) error) (string, error) {
	if err := ValidateDigest(chainID); err != nil {
		return "", fmt.Errorf("flattened layers: %w", err)
	}
	// A lease while it looks and fills, as LayerDir holds one.
	lease, err := s.Lease(s.ctx)
	if err != nil {
		return "", err
	}
	defer lease.Release()
	dir := s.FlatPath(chainID)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(s.flatDir(), 0o700); err != nil {
		return "", err
	}
	if err := s.mkIngest(); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.ingestDir(), "flat-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	if err := fill(root); err != nil {
		return "", fmt.Errorf("flattened layers %s: %w", chainID, err)
	}
	// Nothing checks the copy once it is in place, and a crash must not
	// leave a whole-looking one with files the disk never got: one
	// syncfs for its thousands of files, made once per chain.
	if err := syncFS(root); err != nil {
		return "", fmt.Errorf("flattened layers %s: %w", chainID, err)
	}
	if err := os.Rename(root, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return dir, nil // another process made it first
		}
		return "", err
	}
	if err := syncDir(s.flatDir()); err != nil {
		return "", err
	}
	return dir, nil
}

// FlatPath is where FlatDir keeps the flattened lower of chainID (it may
// not be made yet). chainID must be valid.
func (s *Store) FlatPath(chainID digest.Digest) string {
	return filepath.Join(s.flatDir(), chainID.Encoded())
}

func (s *Store) flatDir() string { return filepath.Join(s.root, "flat") }

// keepChains marks the chain IDs of every prefix of diffIDs: the flattened
// lowers an image with these layers may run on.
func keepChains(diffIDs []digest.Digest, keep map[string]bool) {
	for _, id := range diffIDs {
		if ValidateDigest(id) != nil {
			return // no chain goes on past a bad diffID
		}
	}
	for _, c := range identity.ChainIDs(slices.Clone(diffIDs)) {
		keep[c.Encoded()] = true
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
