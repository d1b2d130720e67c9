package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PruneReport is what Prune did.
type PruneReport struct {
	// Freed is the bytes reclaimed: unreachable blobs, unpacked layers no
	// image uses, and what killed writers left (temp blobs, half-unpacked
	// layers, half-extracted archives).
	Freed int64
	// Unwalked are the images whose manifest cannot be read (each with
	// Err set): what they reach is unknown, so no blob was deleted. Removing
	// them (Remove) lets the next prune reclaim their blobs.
	Unwalked []*Image
}

// Prune deletes what no image in the index uses: blobs no index entry
// reaches, unpacked layers (ROOT/layers/<diffID>) no image's config lists,
// and every temp file and directory, which under the exclusive GC lock can
// only be a killed writer's. It waits for the writers in flight (their
// leases) as long as ctx allows; a caller holding a Lease on the store
// would wait for itself.
//
// One broken image never makes Prune fail. A broken config still leaves
// the manifest's references known, so blobs are pruned exactly. A manifest
// that cannot be read (corrupt or missing) hides what it reaches: then no
// blob is deleted, as git and containerd never delete what they cannot
// prove unreachable, and the image is listed in Unwalked.
func (s *Store) Prune(ctx context.Context) (PruneReport, error) {
	var rep PruneReport
	unlockGC, err := s.gcLock(ctx)
	if err != nil {
		return rep, err
	}
	defer unlockGC()
	// The index lock as well: Tag and Remove change the index without a
	// lease, and the keep set must be the index as the deletions see it.
	unlockIndex, err := s.lockIndex()
	if err != nil {
		return rep, err
	}
	defer unlockIndex()
	idx, err := s.Index()
	if err != nil {
		return rep, err
	}

	keepBlobs := map[digest.Digest]bool{}
	keepLayers := map[string]bool{} // diffID hex
	keepFlat := map[string]bool{}   // chain ID hex
	walked := map[digest.Digest]bool{}
	for _, d := range idx.Manifests {
		if walked[d.Digest] {
			continue
		}
		walked[d.Digest] = true
		keepBlobs[d.Digest] = true
		if img := s.walk(d.Digest, keepBlobs, keepLayers, keepFlat, 0); img != nil {
			img.ManifestDesc = d
			for _, e := range idx.Manifests {
				if t := e.Annotations[ocispec.AnnotationRefName]; e.Digest == d.Digest && t != "" {
					img.Tags = append(img.Tags, t)
				}
			}
			rep.Unwalked = append(rep.Unwalked, img)
		}
	}

	// Temp leftovers first: no writer is in flight, so all of them are dead.
	for _, dir := range []string{s.ingestDir(), s.blobDir(), s.LayersDir(), s.root} {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, err
		}
		for _, e := range ents {
			if dir != s.ingestDir() && !strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			n, err := removeTree(filepath.Join(dir, e.Name()))
			rep.Freed += n
			if err != nil {
				return rep, err
			}
		}
	}

	if len(rep.Unwalked) == 0 {
		ents, err := os.ReadDir(s.blobDir())
		if err != nil {
			return rep, err
		}
		removed := false
		for _, e := range ents {
			if keepBlobs[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] || e.IsDir() {
				continue
			}
			if info, err := e.Info(); err == nil {
				rep.Freed += info.Size()
			}
			if err := os.Remove(filepath.Join(s.blobDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return rep, err
			}
			removed = true
		}
		if removed {
			if err := syncDir(s.blobDir()); err != nil {
				return rep, err
			}
		}
	}

	// A lower of a live overlay (a running container's) stays, whether or
	// not its image is still in the store: deleting files under a mounted
	// overlay would change the container's filesystem under it.
	for hex := range mountedLowers("layers") {
		keepLayers[hex] = true
	}
	for hex := range mountedLowers("flat") {
		keepFlat[hex] = true
	}
	// Unpacked layers are a cache of the blobs, so dropping one is always
	// safe for the data. Each goes out of layers/ by one rename before its
	// files are deleted: a prune killed half way leaves a temp directory
	// (which the next prune takes), never a half layer that LayerDir would
	// take for a whole one.
	// The flattened lowers (FlatDir) are a cache of the layers in turn.
	for _, c := range []struct {
		dir  string
		keep map[string]bool
	}{{s.LayersDir(), keepLayers}, {s.flatDir(), keepFlat}} {
		ents, err := os.ReadDir(c.dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, err
		}
		for _, e := range ents {
			name := e.Name()
			if c.keep[name] || ValidateDigest(digest.NewDigestFromEncoded(digest.SHA256, name)) != nil {
				continue
			}
			doomed, err := os.MkdirTemp(s.ingestDir(), "prune-")
			if err != nil {
				return rep, err
			}
			if err := os.Rename(filepath.Join(c.dir, name), filepath.Join(doomed, name)); err != nil {
				os.Remove(doomed)
				return rep, fmt.Errorf("prune %s: %w", filepath.Join(c.dir, name), err)
			}
			n, err := removeTree(doomed)
			rep.Freed += n
			if err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// maxIndexDepth bounds nested indexes, so a cycle of them cannot loop.
const maxIndexDepth = 8

// walk marks what the manifest (or nested index) d reaches. It returns an
// image with Err set when d cannot be read, so what it reaches is unknown.
// A config that cannot be read only costs its image's unpacked layers.
func (s *Store) walk(d digest.Digest, keepBlobs map[digest.Digest]bool, keepLayers, keepFlat map[string]bool, depth int) *Image {
	mb, err := s.ReadBlob(d)
	if err != nil {
		return &Image{Err: fmt.Errorf("manifest: %w", err)}
	}
	// Both shapes at once: a manifest's config and layers, an index's
	// manifests. A blob that is neither reaches nothing, which is exact.
	var m struct {
		Config    ocispec.Descriptor   `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(mb, &m) != nil {
		return nil
	}
	for _, l := range m.Layers {
		keepBlobs[l.Digest] = true
	}
	for _, c := range m.Manifests {
		keepBlobs[c.Digest] = true
		if depth >= maxIndexDepth {
			return &Image{Err: fmt.Errorf("manifest %s: %w: indexes nested too deep", d, ErrCorrupt)}
		}
		if img := s.walk(c.Digest, keepBlobs, keepLayers, keepFlat, depth+1); img != nil {
			return img
		}
	}
	if m.Config.Digest == "" {
		return nil
	}
	keepBlobs[m.Config.Digest] = true
	cb, err := s.ReadBlob(m.Config.Digest)
	if err != nil {
		return nil
	}
	var cfg ocispec.Image
	if json.Unmarshal(cb, &cfg) != nil {
		return nil
	}
	for _, id := range cfg.RootFS.DiffIDs {
		if ValidateDigest(id) == nil {
			keepLayers[id.Encoded()] = true
		}
	}
	keepChains(cfg.RootFS.DiffIDs, keepFlat)
	return nil
}

// removeTree deletes path, file or directory, and returns the bytes its
// files held (hardlinked files once).
func removeTree(path string) (int64, error) {
	var n int64
	seen := map[uint64]bool{}
	filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += info.Size()
		return nil
	})
	if err := os.RemoveAll(path); err != nil {
		return n, fmt.Errorf("prune %s: %w", path, err)
	}
	return n, nil
}

// mountedLowers lists the directories of kind (layers: unpacked layers by
// diffID hex; flat: flattened lowers by chain ID hex) that an overlay
// mount of this mount namespace uses as a lower. It matches on the last two
// path elements (kind/<hex>), which may keep a directory of another store
// too: keeping more is the safe side.
func mountedLowers(kind string) map[string]bool {
	out := map[string]bool{}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("overlay"))
	if err != nil {
		return out
	}
	for _, m := range mounts {
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			var lowers []string
			if v, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				// Newer kernels also list data-only lowers after "::".
				lowers = strings.Split(strings.ReplaceAll(v, "::", ":"), ":")
			} else if v, ok := strings.CutPrefix(opt, "lowerdir+="); ok {
				// A mount that took its lowers one by one (fsconfig)
				// lists them so, one option each.
				lowers = []string{v}
			}
			for _, l := range lowers {
				// A name alone is relative to the directory the mount
				// was made in (snap's containers name their layers so).
				if filepath.Base(filepath.Dir(l)) == kind || !strings.Contains(l, "/") {
					out[filepath.Base(l)] = true
				}
			}
		}
	}
	return out
}
