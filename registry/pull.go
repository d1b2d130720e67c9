package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/progress"
	"snap/store"
)

// Pulled is what Pull stored.
type Pulled struct {
	Image *store.Image
	// Reference is the reference pulled, in full (registry and tag or digest).
	Reference name.Reference
	// Digest is the manifest's digest in the registry (docker's RepoDigest).
	Digest digest.Digest
	// Tag is the store's tag for it ("" when pulled by digest).
	Tag string
	// Downloaded counts the layer blobs that were fetched; the others were
	// in the store already.
	Downloaded int
}

// Pull fetches the image ref names (a tag or a digest; the platform's image
// of a multi-platform index) into st and tags it with ref. Every blob is
// checked against its digest, and every layer against its config's diffID,
// before the image is stored; what fails leaves no image and no tag. Layers
// the store holds already are not fetched; layers fetched before an
// interrupted pull are not fetched again.
func Pull(ctx context.Context, st *store.Store, ref string, opts Options) (*Pulled, error) {
	p, err := pull(ctx, st, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return p, nil
}

func pull(ctx context.Context, st *store.Store, s string, opts Options) (*Pulled, error) {
	ref, err := ParseReference(s, opts)
	if err != nil {
		return nil, err
	}
	tag := ""
	if _, ok := ref.(name.Tag); ok {
		if tag, err = store.ParseRef(s); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrReference, err)
		}
	}
	plat, err := platformOf(opts.Platform)
	if err != nil {
		return nil, err
	}
	ro, err := remoteOptions(ctx, ref.Context().RegistryStr(), opts)
	if err != nil {
		return nil, err
	}
	ro = append(ro, remote.WithPlatform(plat))
	puller, err := remote.NewPuller(ro...)
	if err != nil {
		return nil, err
	}
	desc, err := puller.Get(ctx, ref)
	if err != nil {
		return nil, classify(err)
	}
	img, err := desc.Image() // an index: the platform's image
	if err != nil {
		if desc.MediaType.IsIndex() && !indexHas(desc, plat) {
			return nil, fmt.Errorf("%w: no image for platform %s in the index", ErrNotFound, plat.String())
		}
		return nil, classify(err)
	}
	m, err := checkImage(img)
	if err != nil {
		return nil, err
	}
	mdigest, err := img.Digest()
	if err != nil {
		return nil, classify(err)
	}

	// The lease keeps a prune from taking the layers stored before the
	// image that reaches them is.
	lease, err := st.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	descs, fetched, err := pullLayers(ctx, st, img, m, opts)
	if err != nil {
		return nil, err
	}
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	imgs, err := st.PutAll(ctx, []store.NewImage{{Config: m.rawConfig, Layers: descs, Tags: tags, Annotations: m.annotations}})
	if err != nil {
		return nil, err
	}
	repo := ref.Context().String()
	_ = st.UpdateDistribution(func(d *store.Distribution) { // a cache: a failure costs a later mount
		for _, l := range descs {
			d.AddRepo(l.Digest, repo)
		}
	})
	return &Pulled{Image: imgs[0], Reference: ref, Digest: digest.Digest(mdigest.String()), Tag: tag, Downloaded: fetched}, nil
}

// maxConfig bounds an image config read into memory: docker's are a few
// KiB, a long history a few hundred.
const maxConfig = 8 << 20

// checkedImage is a manifest checked for what snap stores.
type checkedImage struct {
	layers    []v1.Descriptor
	diffIDs   []digest.Digest
	rawConfig []byte
	// annotations are the manifest's (provenance), kept in the store's
	// manifest.
	annotations map[string]string
}

// checkImage reads a registry image's manifest and config and refuses what
// does not add up: a config that is not its digest, digests that are not
// sha256 (a digest becomes a path), layers the config does not count, layers
// that are no layer tar, foreign layers.
func checkImage(img v1.Image) (*checkedImage, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, classify(err)
	}
	// go-containerregistry reads the config whole, as long as the manifest
	// says (or for ever, at size -1).
	if m.Config.Size < 0 || m.Config.Size > maxConfig {
		return nil, fmt.Errorf("config %s: %w: %d bytes (the limit is %d)", m.Config.Digest, ErrTooLarge, m.Config.Size, maxConfig)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, classify(err)
	}
	if got := digest.FromBytes(raw); got.String() != m.Config.Digest.String() {
		return nil, fmt.Errorf("config %s: %w: it hashes to %s", m.Config.Digest, ErrMismatch, got)
	}
	if err := store.ValidateDigest(digest.Digest(m.Config.Digest.String())); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w: not an image config: %v", m.Config.Digest, ErrMismatch, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest: %w: %d layers, its config lists %d diff_ids", ErrMismatch, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		if err := store.ValidateDigest(digest.Digest(l.Digest.String())); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if err := store.ValidateDigest(cfg.RootFS.DiffIDs[i]); err != nil {
			return nil, fmt.Errorf("layer %d diff_id: %w", i, err)
		}
		switch l.MediaType {
		case types.DockerLayer, types.OCILayer, types.OCIUncompressedLayer, types.OCILayerZStd, types.DockerUncompressedLayer:
		default:
			return nil, fmt.Errorf("layer %s: media type %q: only layer tars (plain, gzip, zstd) are pulled, no foreign layers", l.Digest, l.MediaType)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %s: size %d", l.Digest, l.Size)
		}
	}
	return &checkedImage{layers: m.Layers, diffIDs: cfg.RootFS.DiffIDs, rawConfig: raw, annotations: m.Annotations}, nil
}

// pullLayers stores the image's layers, opts.Jobs at once, and returns their
// descriptors in manifest order and how many were fetched.
func pullLayers(ctx context.Context, st *store.Store, img v1.Image, m *checkedImage, opts Options) ([]ocispec.Descriptor, int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sink := opts.sink()
	out := make([]ocispec.Descriptor, len(m.layers))
	var (
		mu      sync.Mutex
		fetched int
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, opts.jobs())
	// A layer twice in one image is fetched once.
	seen := map[v1.Hash]bool{}
	for i, l := range m.layers {
		id := shortID(l.Digest.Hex)
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		if st.HasBlob(digest.Digest(l.Digest.String())) {
			sink.Update(progress.Event{ID: id, Status: "Already exists"})
		} else {
			sink.Update(progress.Event{ID: id, Status: "Waiting"})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			d, got, err := pullLayer(ctx, st, img, l, m.diffIDs[i], sink)
			if err != nil {
				cancel(fmt.Errorf("layer %s: %w", l.Digest, err))
				return
			}
			mu.Lock()
			out[i] = d
			if got {
				fetched++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	for i, l := range m.layers { // the repeats of a layer fetched once
		if out[i].Digest == "" {
			for j := range i {
				if m.layers[j].Digest == l.Digest {
					out[i] = out[j]
				}
			}
		}
	}
	return out, fetched, nil
}

// pullLayer stores one layer blob unless the store has it, and reports
// whether it was fetched.
func pullLayer(ctx context.Context, st *store.Store, img v1.Image, l v1.Descriptor, diffID digest.Digest, sink progress.Sink) (ocispec.Descriptor, bool, error) {
	d := digest.Digest(l.Digest.String())
	id := shortID(l.Digest.Hex)
	if st.HasBlob(d) {
		desc, err := st.LayerDescriptor(ctx, d, diffID)
		if err == nil {
			return desc, false, nil
		}
		if !errors.Is(err, store.ErrCorrupt) {
			return ocispec.Descriptor{}, false, err
		}
		// A corrupt copy: fetch it again, which heals it.
	}
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return ocispec.Descriptor{}, false, classify(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return ocispec.Descriptor{}, false, classify(err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, id: id, status: "Downloading", total: l.Size, sink: sink}
	desc, err := st.AddLayerBlob(ctx, cr, ocispec.Descriptor{MediaType: string(l.MediaType), Digest: d, Size: l.Size}, diffID)
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			err = fmt.Errorf("%w: %v", ErrMismatch, err)
		}
		return ocispec.Descriptor{}, false, classify(err)
	}
	sink.Update(progress.Event{ID: id, Status: "Pull complete"})
	return desc, true, nil
}

// shortID is how docker names a layer on its progress line.
func shortID(hex string) string {
	if len(hex) > 12 {
		return hex[:12]
	}
	return hex
}

// countingReader reports each read as progress.
type countingReader struct {
	r      io.Reader
	id     string
	status string
	n      int64
	total  int64
	sink   progress.Sink
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.sink.Update(progress.Event{ID: c.id, Status: c.status, Current: c.n, Total: c.total})
	}
	return n, err
}

// indexHas reports whether the index desc lists an image for plat, so that
// a child that fails (not its digest) is not called missing.
func indexHas(desc *remote.Descriptor, plat v1.Platform) bool {
	idx, err := desc.ImageIndex()
	if err != nil {
		return false
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return false
	}
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(plat) {
			return true
		}
	}
	return false
}
