package store

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/dockertypes"
)

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// v1Image is docker 20.10's image.V1Image, the json of a saved layer.
type v1Image struct {
	ID              string              `json:"id,omitempty"`
	Parent          string              `json:"parent,omitempty"`
	Comment         string              `json:"comment,omitempty"`
	Created         time.Time           `json:"created"`
	Container       string              `json:"container,omitempty"`
	ContainerConfig dockertypes.Config  `json:"container_config,omitempty"`
	DockerVersion   string              `json:"docker_version,omitempty"`
	Author          string              `json:"author,omitempty"`
	Config          *dockertypes.Config `json:"config,omitempty"`
	Architecture    string              `json:"architecture,omitempty"`
	Variant         string              `json:"variant,omitempty"`
	OS              string              `json:"os,omitempty"`
	Size            int64               `json:",omitempty"`
}

// v1ID is docker's v1.CreateID: the legacy ID of a layer directory in a
// saved archive, from the layer's v1 json, its chain ID and its parent's ID.
func v1ID(img v1Image, chainID, parent digest.Digest) (digest.Digest, error) {
	img.ID = ""
	b, err := json.Marshal(img)
	if err != nil {
		return "", err
	}
	var m map[string]*json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return "", err
	}
	raw := func(s digest.Digest) *json.RawMessage {
		b, _ := json.Marshal(s)
		return (*json.RawMessage)(&b)
	}
	m["layer_id"] = raw(chainID)
	if parent != "" {
		m["parent"] = raw(parent)
	}
	b, err = json.Marshal(m)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// header is a tar header as docker's archive.Tar writes one for a file
// docker save made: the mode with its type bits, root's names.
func header(typ byte, name string, mtime time.Time, size int64) tar.Header {
	mode := map[byte]int64{tar.TypeReg: 0o100644, tar.TypeDir: 0o40755, tar.TypeSymlink: 0o120777}[typ]
	return tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: mtime, Uname: "root", Gname: "root"}
}

// SaveDockerArchive writes images as docker 20.10's `docker save` does, so
// `docker load` and every reader of docker's format take them: per layer a
// directory named by its legacy v1 ID holding VERSION, json and the
// uncompressed layer.tar (a symlink to the first copy when the same layer
// comes again), the configs as <ID>.json, manifest.json and repositories,
// in docker's order. Layers are decompressed as they stream out: nothing is
// copied to a temp file; a layer whose uncompressed size is not recorded is
// read once more first, to count it. It stops with ctx's error once ctx is
// cancelled.
func (s *Store) SaveDockerArchive(ctx context.Context, w io.Writer, imgs []*Image) error {
	var entries []saveEntry
	have := map[string]bool{}
	add := func(e saveEntry) {
		if !have[e.hdr.Name] {
			have[e.hdr.Name] = true
			entries = append(entries, e)
		}
	}
	file := func(name string, mtime time.Time, b []byte) saveEntry {
		return saveEntry{
			hdr:  header(tar.TypeReg, name, mtime, int64(len(b))),
			body: func(w io.Writer) error { _, err := w.Write(b); return err },
		}
	}
	epoch := time.Unix(0, 0).UTC()
	layerTars := map[digest.Digest]string{} // diffID -> the v1 ID whose layer.tar holds it
	var manifest []dockerManifest
	repos := map[string]map[string]string{}
	for _, img := range imgs {
		if len(img.Manifest.Layers) != len(img.Config.RootFS.DiffIDs) {
			return fmt.Errorf("image %s: %d layers but %d diff_ids", img.ID, len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs))
		}
		var top v1Image
		if err := json.Unmarshal(img.RawConfig, &top); err != nil {
			return fmt.Errorf("config %s: %w", img.ID, err)
		}
		top.ID, top.Parent = "", "" // docker reads "parent" into the image, not its V1Image
		created := top.Created.Truncate(time.Second)
		if created.Before(epoch) {
			created = epoch // as docker's Chtimes clamps it
		}
		m := dockerManifest{Config: img.ID.Encoded() + ".json", RepoTags: img.Tags}
		var chain, parent digest.Digest
		for i, l := range img.Manifest.Layers {
			diffID := img.Config.RootFS.DiffIDs[i]
			if err := ValidateDigest(diffID); err != nil {
				return fmt.Errorf("image %s: diff_id %q: %w", img.ID, diffID, err)
			}
			if chain == "" {
				chain = diffID
			} else {
				chain = digest.FromString(chain.String() + " " + diffID.String())
			}
			v1 := v1Image{Created: epoch}
			if i == len(img.Manifest.Layers)-1 {
				v1 = top
			}
			id, err := v1ID(v1, chain, parent)
			if err != nil {
				return err
			}
			v1.ID, v1.OS = id.Encoded(), top.OS
			if parent != "" {
				v1.Parent = parent.Encoded()
			}
			parent = id
			dir := v1.ID + "/"
			m.Layers = append(m.Layers, dir+"layer.tar")
			if have[dir] {
				continue
			}
			js, err := json.Marshal(v1)
			if err != nil {
				return err
			}
			add(saveEntry{hdr: header(tar.TypeDir, dir, created, 0)})
			add(file(dir+"VERSION", created, []byte("1.0")))
			add(file(dir+"json", created, js))
			if first, ok := layerTars[diffID]; ok {
				h := header(tar.TypeSymlink, dir+"layer.tar", created, 0)
				h.Linkname = "../" + first + "/layer.tar"
				add(saveEntry{hdr: h})
				continue
			}
			size, err := s.layerTarSize(ctx, l)
			if err != nil {
				return fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			layerTars[diffID] = v1.ID
			add(saveEntry{
				hdr:  header(tar.TypeReg, dir+"layer.tar", created, size),
				body: func(w io.Writer) error { return s.writeLayerTar(ctx, w, l, diffID, size) },
			})
		}
		add(file(m.Config, created, img.RawConfig))
		for _, t := range img.Tags {
			i := strings.LastIndex(t, ":")
			if i < 0 || parent == "" {
				continue
			}
			repo, tag := t[:i], t[i+1:]
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag] = parent.Encoded() // docker names the top layer's v1 ID here
		}
		manifest = append(manifest, m)
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	add(file("manifest.json", epoch, append(mb, '\n'))) // docker's json.Encoder ends it so
	if len(repos) > 0 {
		rb, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		add(file("repositories", epoch, append(rb, '\n')))
	}
	// docker tars a directory it wrote: names in walk order.
	slices.SortFunc(entries, func(a, b saveEntry) int {
		return slices.Compare(strings.Split(strings.TrimSuffix(a.hdr.Name, "/"), "/"), strings.Split(strings.TrimSuffix(b.hdr.Name, "/"), "/"))
	})
	return writeEntries(ctx, w, entries)
}

// layerTarSize is the size of a layer's uncompressed tar: recorded on its
// descriptor, the blob's own size when it is not compressed, or else
// counted by decompressing it once.
func (s *Store) layerTarSize(ctx context.Context, l ocispec.Descriptor) (int64, error) {
	if v, ok := l.Annotations[AnnotationUncompressedSize]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	switch l.MediaType {
	case ocispec.MediaTypeImageLayer, "application/vnd.docker.image.rootfs.diff.tar":
		return l.Size, nil
	}
	rc, err := s.OpenBlob(l.Digest)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	dec, err := compression.NewReader(ctxReader{ctx, rc})
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	return io.Copy(io.Discard, dec)
}

// writeLayerTar streams a layer's blob, decompressed, as exactly size bytes,
// and checks it against the diffID as it goes.
func (s *Store) writeLayerTar(ctx context.Context, w io.Writer, l ocispec.Descriptor, diffID digest.Digest, size int64) error {
	rc, err := s.OpenBlob(l.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	dec, err := compression.NewReader(ctxReader{ctx, rc})
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer dec.Close()
	h := sha256.New()
	tee := io.TeeReader(dec, h)
	if n, err := io.CopyN(w, tee, size); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%d bytes uncompressed, %d recorded", n, size)
		}
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if n, err := io.Copy(io.Discard, tee); err != nil || n > 0 {
		if err == nil {
			err = fmt.Errorf("more than the %d bytes recorded uncompressed", size)
		}
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // the blob's digest is checked at its end
		return err
	}
	if err := checkDiffID(digest.NewDigest(digest.SHA256, h), diffID); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	return nil
}

// LoadArchive reads a `docker save` archive or an OCI archive, plain or
// compressed as docker load takes them (gzip, bzip2, xz, zstd), and stores
// its images. Nothing is extracted: the tar's entries are indexed by name
// and only those the manifests reference are read, so an entry that is
// not a layer costs nothing however large it claims to be. A plain archive
// in a regular file is read in place; anything else (a pipe, a compressed
// file) is decompressed into an unlinked spool file first. Every name and
// digest the archive gives is checked before it is used, layers against
// the config's diff_ids. The index changes only once everything is stored,
// and not at all if ctx is cancelled first.
func (s *Store) LoadArchive(ctx context.Context, r io.Reader, comp compression.Compression) ([]*Image, error) {
	lease, err := s.Lease(ctx) // from the first temp file until Put makes the blobs reachable
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	ix, done, err := s.openArchive(ctx, r)
	if err != nil {
		return nil, err
	}
	defer done()
	if len(ix.entries) == 0 {
		return nil, fmt.Errorf("archive: empty or not a tar")
	}
	var load func() ([]NewImage, error)
	switch {
	case ix.entries["manifest.json"] != nil: // docker 25 writes an OCI layout beside it; docker reads this
		load = func() ([]NewImage, error) { return s.loadDockerArchive(ctx, ix, comp) }
	case ix.entries[ocispec.ImageLayoutFile] != nil:
		load = func() ([]NewImage, error) { return s.loadOCIArchive(ctx, ix) }
	default:
		return nil, fmt.Errorf("archive: neither a docker-archive (manifest.json) nor an OCI archive (oci-layout)")
	}
	all, err := load()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.PutAll(ctx, all)
}

// openArchive indexes the archive's tar: a plain regular file in place,
// anything else through streamArchive.
func (s *Store) openArchive(ctx context.Context, r io.Reader) (*tarIndex, func(), error) {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil && off <= fi.Size() {
				sr := io.NewSectionReader(f, off, fi.Size()-off)
				magic := make([]byte, 10)
				n, _ := sr.ReadAt(magic, 0)
				if compression.Detect(magic[:n]) == compression.None {
					ix, err := indexTar(ctx, sr, sr.Size())
					return ix, func() {}, err
				}
				return s.streamArchive(ctx, sr, sr, sr.Size())
			}
		}
	}
	return s.streamArchive(ctx, r, nil, 0)
}

func (s *Store) loadDockerArchive(ctx context.Context, ix *tarIndex, comp compression.Compression) ([]NewImage, error) {
	mb, err := ix.readSmall(ctx, "manifest.json")
	if err != nil {
		return nil, fmt.Errorf("archive manifest.json: %w", err)
	}
	var manifest []dockerManifest
	if err := json.Unmarshal(mb, &manifest); err != nil {
		return nil, fmt.Errorf("archive manifest.json: %w", err)
	}
	// Shared layers are read once: by resolved entry name and the diff_id
	// asked of them, so one asked for another diff_id is read and refused.
	type shared struct {
		entry  string
		diffID digest.Digest
	}
	layers := map[shared]ocispec.Descriptor{}
	var all []NewImage
	for _, m := range manifest {
		cb, err := ix.readSmall(ctx, m.Config)
		if err != nil {
			return nil, fmt.Errorf("archive config %q: %w", m.Config, err)
		}
		img := archiveImage{what: strconv.Quote(m.Config), config: cb, tags: m.RepoTags}
		for _, name := range m.Layers {
			img.layers = append(img.layers, archiveLayer{what: strconv.Quote(name), put: func(diffID digest.Digest) (ocispec.Descriptor, error) {
				resolved, sr, err := ix.open(name)
				if err != nil {
					return ocispec.Descriptor{}, err
				}
				k := shared{resolved, diffID}
				if desc, ok := layers[k]; ok {
					return desc, nil
				}
				desc, _, err := s.addLayer(ctx, sr, comp, diffID)
				if err != nil {
					return ocispec.Descriptor{}, err
				}
				layers[k] = desc
				return desc, nil
			}})
		}
		p, err := stage(img)
		if err != nil {
			return nil, err
		}
		all = append(all, p)
	}
	return all, nil
}
