package store

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"

	archive "github.com/moby/go-archive"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
)

// LayerDir returns a directory holding one layer's files, unpacked once per
// diffID and shared by everything that uses the layer. Whiteouts and opaque
// markers are kept in overlayfs' form (char 0/0 devices, the opaque xattr),
// so the directory serves as an overlay lowerdir and as a lower for the
// change-walker. Unpacking goes through go-archive's os.Root-confined
// writer: no entry, symlink or hardlink can reach outside the directory.
//
// It holds a lease while it looks and unpacks: the half-unpacked directory
// lives in ROOT/ingest, where a prune would take it, and a prune must not
// remove the layer between the check that it is there and the return.
func (s *Store) LayerDir(blob ocispec.Descriptor, diffID digest.Digest) (string, error) {
	if err := ValidateDigest(diffID); err != nil {
		return "", fmt.Errorf("layer diffID: %w", err)
	}
	// LayerDir has no context to give: a prune it may wait for is short.
	lease, err := s.Lease(s.ctx)
	if err != nil {
		return "", err
	}
	defer lease.Release()
	base := s.LayersDir()
	dir := filepath.Join(base, diffID.Encoded())
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	if err := s.mkIngest(); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(s.ingestDir(), "layer-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	rc, err := s.OpenBlob(blob.Digest)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	defer rc.Close()
	dec, err := compression.NewReader(rc)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	defer dec.Close()
	h := sha256.New()
	tee := io.TeeReader(dec, h)
	if err := archive.Unpack(tee, tmp, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}); err != nil {
		return "", fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's end blocks count too
		return "", fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != diffID {
		return "", fmt.Errorf("layer %s: content is %s, the image says %s", blob.Digest, got, diffID)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return dir, nil // another process unpacked it first
		}
		return "", err
	}
	return dir, nil
}

// LayerDirs unpacks an image's layers and returns them top-most first, the
// order of overlayfs' lowerdir= and of the change-walker's lowers.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	if len(img.Manifest.Layers) != len(img.Config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", img.ID, len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs))
	}
	// One lease over all of them: no prune between one layer and the next.
	lease, err := s.Lease(s.ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	dirs := make([]string, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		d, err := s.LayerDir(l, img.Config.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		dirs[len(dirs)-1-i] = d
	}
	return dirs, nil
}

// LayerPath is where LayerDir unpacks the layer with this diffID (it may not
// be unpacked yet). diffID must be valid.
func (s *Store) LayerPath(diffID digest.Digest) string {
	return filepath.Join(s.LayersDir(), diffID.Encoded())
}
