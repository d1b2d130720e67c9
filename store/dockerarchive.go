package store

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/diff"
)

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// SaveDockerArchive writes images as `docker save` does, so `docker load`
// takes them: manifest.json, <config>.json and <diffID>/layer.tar per layer
// (the stored blob, compressed or not; docker load decompresses). Layers
// shared between images are written once.
func (s *Store) SaveDockerArchive(w io.Writer, imgs []*Image) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	add := func(name string, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch}); err != nil {
			return err
		}
		_, err := io.Copy(tw, body)
		return err
	}
	var manifest []dockerManifest
	written := map[string]bool{}
	repos := map[string]map[string]string{}
	for _, img := range imgs {
		m := dockerManifest{Config: img.ID.Encoded() + ".json", RepoTags: img.Tags}
		if m.RepoTags == nil {
			m.RepoTags = []string{}
		}
		if !written[m.Config] {
			if err := add(m.Config, int64(len(img.RawConfig)), strings.NewReader(string(img.RawConfig))); err != nil {
				return err
			}
			written[m.Config] = true
		}
		for i, l := range img.Manifest.Layers {
			name := img.Config.RootFS.DiffIDs[i].Encoded() + "/layer.tar"
			m.Layers = append(m.Layers, name)
			if written[name] {
				continue
			}
			rc, err := s.OpenBlob(l.Digest)
			if err != nil {
				return err
			}
			err = add(name, l.Size, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			written[name] = true
		}
		for _, t := range img.Tags {
			repo, tag, _ := strings.Cut(t, ":")
			if i := strings.LastIndex(t, ":"); i > 0 {
				repo, tag = t[:i], t[i+1:]
			}
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag] = img.ID.Encoded()
		}
		manifest = append(manifest, m)
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := add("manifest.json", int64(len(mb)), strings.NewReader(string(mb))); err != nil {
		return err
	}
	rb, _ := json.Marshal(repos)
	if err := add("repositories", int64(len(rb)), strings.NewReader(string(rb))); err != nil {
		return err
	}
	return tw.Close()
}

// LoadArchive reads a `docker save` archive (or an OCI archive) and
// stores its images. The archive is first extracted flat into a temp dir:
// only regular files, names checked, written through os.Root, so no entry
// lands outside it. Layers are checked against the config's diff_ids. The
// index changes only once everything is stored.
func (s *Store) LoadArchive(r io.Reader, comp diff.Compression) ([]*Image, error) {
	lease, err := s.Lease(context.TODO()) // from the first temp file until Put makes the blobs reachable
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	tmp, err := os.MkdirTemp(s.root, ".tmp-load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	entries := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		entries++
		name := path.Clean(h.Name)
		if !fs.ValidPath(name) {
			return nil, fmt.Errorf("archive entry %q: outside the archive", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return nil, fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			continue
		case tar.TypeReg:
		default:
			continue // symlinks (old docker saves link shared layers) are never followed
		}
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return nil, fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
		f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
		_, err = io.Copy(f, tr)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
	}
	if entries == 0 {
		return nil, fmt.Errorf("archive: empty or not a tar")
	}
	if _, err := root.Stat(ocispec.ImageLayoutFile); err == nil {
		return s.loadOCILayout(root)
	}
	mb, err := root.ReadFile("manifest.json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive: neither a docker-archive (manifest.json) nor an OCI archive (oci-layout)")
	}
	if err != nil {
		return nil, err
	}
	var manifest []dockerManifest
	if err := json.Unmarshal(mb, &manifest); err != nil {
		return nil, fmt.Errorf("archive manifest.json: %w", err)
	}
	type loaded struct {
		config []byte
		layers []ocispec.Descriptor
		tags   []string
	}
	var all []loaded
	for _, m := range manifest {
		cb, err := root.ReadFile(path.Clean(m.Config))
		if err != nil {
			return nil, fmt.Errorf("archive config %q: %w", m.Config, err)
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return nil, fmt.Errorf("archive config %q: %w", m.Config, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			return nil, fmt.Errorf("archive config %q: %d diff_ids for %d layers", m.Config, len(cfg.RootFS.DiffIDs), len(m.Layers))
		}
		l := loaded{config: cb}
		for i, name := range m.Layers {
			f, err := root.Open(path.Clean(name))
			if err != nil {
				return nil, fmt.Errorf("archive layer %q: %w", name, err)
			}
			desc, diffID, err := s.AddLayer(f, comp)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("archive layer %q: %w", name, err)
			}
			if diffID != cfg.RootFS.DiffIDs[i] {
				return nil, fmt.Errorf("archive layer %q: content is %s, the config says %s", name, diffID, cfg.RootFS.DiffIDs[i])
			}
			l.layers = append(l.layers, desc)
		}
		for _, t := range m.RepoTags {
			ref, err := ParseRef(t)
			if err != nil {
				return nil, err
			}
			l.tags = append(l.tags, ref)
		}
		all = append(all, l)
	}
	var out []*Image
	for _, l := range all {
		img, err := s.Put(l.config, l.layers, l.tags)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}
