package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/progress"
	"snap/store"
)

// Pushed is what Push sent.
type Pushed struct {
	Reference name.Reference
	// Digest and Size are the manifest's, as the registry holds it.
	Digest digest.Digest
	Size   int64
	// Sent counts the layer blobs uploaded; Mounted those mounted from
	// another repository of the registry; the others were there already.
	Sent, Mounted int
}

// Push sends the store's image to the registry as ref ("" : the image's own
// name, which must then be a reference). Blobs the repository has are not
// sent, blobs another repository of the registry has (as far as the store
// knows) are mounted, layers go up opts.Jobs at once, and a push that was
// interrupted sends, when run again, only what did not arrive. Layers the
// store holds uncompressed are compressed as opts.Compression says (gzip by
// default); the compressed digest is remembered, so the next push of the
// layer compresses nothing when the registry has it.
func Push(ctx context.Context, st *store.Store, image, ref string, opts Options) (*Pushed, error) {
	dest := ref
	if dest == "" {
		dest = image
	}
	p, err := push(ctx, st, image, dest, opts)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", dest, err)
	}
	return p, nil
}

func push(ctx context.Context, st *store.Store, image, dest string, opts Options) (*Pushed, error) {
	img, err := st.Lookup(image)
	if err != nil {
		return nil, err
	}
	r, err := ParseReference(dest, opts)
	if err != nil {
		return nil, err
	}
	if _, ok := r.(name.Tag); !ok {
		return nil, fmt.Errorf("%w: a push goes to a tag, not a digest", ErrReference)
	}
	comp := opts.Compression
	if comp == "" || comp == compression.None {
		comp = compression.Gzip
	}
	if len(img.Manifest.Layers) != len(img.Config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", image, len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs))
	}
	// The lease keeps the blobs compressed for this push until they are
	// sent; the image's own are reachable from the index.
	lease, err := st.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	sink := opts.sink()
	layers := make([]*storeLayer, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		if layers[i], err = outgoing(ctx, st, l, img.Config.RootFS.DiffIDs[i], comp, sink); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	ro, err := remoteOptions(ctx, r.Context().RegistryStr(), opts)
	if err != nil {
		return nil, err
	}
	pusher, err := remote.NewPusher(ro...)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(ro...)
	if err != nil {
		return nil, err
	}
	res := &Pushed{Reference: r}
	out, err := newOutImage(img, layers)
	if err != nil {
		return nil, err
	}
	config, err := partial.ConfigLayer(out)
	if err != nil {
		return nil, err
	}
	if err := pushLayers(ctx, st, opts.jobs(), pusher, puller, r.Context(), layers, config, res, sink); err != nil {
		return nil, err
	}
	// Every blob is in the repository now: only the manifest goes. Pushing
	// out itself would ask the registry about each blob once more, a round
	// trip per blob on the way to the manifest.
	raw, _ := out.RawManifest()
	mt, _ := out.MediaType()
	if err := pusher.Push(ctx, r, rawManifest{raw, mt}); err != nil {
		return nil, classify(err)
	}
	md, _ := out.Digest()
	ms, _ := out.Size()
	res.Digest, res.Size = digest.Digest(md.String()), ms
	repo := r.Context().String()
	_ = st.UpdateDistribution(func(d *store.Distribution) { // a cache: a failure costs a later mount
		for _, l := range layers {
			d.AddRepo(l.desc.Digest, repo)
		}
	})
	return res, nil
}

// outgoing is the blob a stored layer goes out as: itself when compressed,
// else the remembered compressed blob, else one compressed now into the
// store (and remembered).
func outgoing(ctx context.Context, st *store.Store, l ocispec.Descriptor, diffID digest.Digest, comp compression.Compression, sink progress.Sink) (*storeLayer, error) {
	if err := store.ValidateDigest(diffID); err != nil {
		return nil, err
	}
	sl := &storeLayer{st: st, diffID: diffID, sink: sink}
	if l.MediaType != ocispec.MediaTypeImageLayer && l.MediaType != string(types.DockerUncompressedLayer) {
		sl.desc = ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		sl.source = l.Digest
		return sl, nil
	}
	sl.plain, sl.comp = l.Digest, comp
	if d, ok := st.Distribution().CompressedAs(diffID, comp); ok {
		sl.desc = d
		if st.HasBlob(d.Digest) {
			sl.source = d.Digest
		} // else Compressed compresses again: the writers are deterministic
		return sl, nil
	}
	id := shortID(l.Digest.Encoded())
	sink.Update(progress.Event{ID: id, Status: "Compressing"})
	d, err := st.CompressBlob(ctx, l.Digest, comp)
	if err != nil {
		return nil, err
	}
	if err := st.UpdateDistribution(func(dist *store.Distribution) { dist.SetCompressed(diffID, comp, d) }); err != nil {
		return nil, err
	}
	sl.desc, sl.source = d, d.Digest
	return sl, nil
}

// pushLayers uploads the layers the repository lacks, at most as many at
// once as the pusher's jobs, mounting those another repository has, and
// the config blob beside them.
func pushLayers(ctx context.Context, st *store.Store, jobs int, pusher *remote.Pusher, puller *remote.Puller, repo name.Repository, layers []*storeLayer, config v1.Layer, res *Pushed, sink progress.Sink) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg               sync.WaitGroup
		sent, mountedN   atomic.Int32
		seen             = map[digest.Digest]bool{}
		sem              = make(chan struct{}, jobs)
		dist             = st.Distribution()
		registry, target = repo.RegistryStr(), repo.String()
	)
	var todo []*storeLayer
	for _, l := range layers {
		if seen[l.desc.Digest] {
			continue
		}
		seen[l.desc.Digest] = true
		sink.Update(progress.Event{ID: l.id(), Status: "Preparing"})
		todo = append(todo, l)
	}
	// The config goes up with the layers, not after them: for an image
	// whose layers are there already (golden:2 after golden:1), its upload
	// is most of the push.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := pusher.Upload(ctx, repo, config); err != nil {
			h, _ := config.Digest()
			cancel(fmt.Errorf("config %s: %w", h, classify(err)))
		}
	}()
	for _, l := range todo {
		sink.Update(progress.Event{ID: l.id(), Status: "Waiting"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			h, _ := v1.NewHash(l.desc.Digest.String())
			var up v1.Layer = l
			from := ""
			for _, r := range slices.Backward(dist.Repos[l.desc.Digest]) {
				src, err := name.NewRepository(r)
				if err == nil && src.RegistryStr() == registry && src.String() != target {
					up = &remote.MountableLayer{Layer: l, Reference: src.Digest(h.String())}
					from = src.RepositoryStr()
					break
				}
			}
			if from != "" {
				// Upload asks whether the blob is there before it mounts,
				// but does not say which it was: ask first, to tell.
				remoteLayer, err := puller.Layer(ctx, repo.Digest(h.String()))
				if err == nil {
					if ok, err := partial.Exists(remoteLayer); err == nil && ok {
						sink.Update(progress.Event{ID: l.id(), Status: "Layer already exists"})
						return
					}
				}
			}
			// Upload skips a blob the repository has (it asks with HEAD).
			if err := pusher.Upload(ctx, repo, up); err != nil {
				cancel(fmt.Errorf("layer %s: %w", l.desc.Digest, classify(err)))
				return
			}
			switch {
			case l.opened.Load():
				sent.Add(1)
				sink.Update(progress.Event{ID: l.id(), Status: "Pushed"})
			case from == "":
				sink.Update(progress.Event{ID: l.id(), Status: "Layer already exists"})
			default:
				mountedN.Add(1)
				sink.Update(progress.Event{ID: l.id(), Status: "Mounted from " + from})
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	res.Sent, res.Mounted = int(sent.Load()), int(mountedN.Load())
	return nil
}

// storeLayer is a layer of the store as go-containerregistry sends it.
type storeLayer struct {
	st     *store.Store
	desc   ocispec.Descriptor // as it goes out
	diffID digest.Digest
	source digest.Digest // the store blob holding desc's bytes; "" : compress plain again
	plain  digest.Digest // the uncompressed blob, for a layer stored so
	comp   compression.Compression
	sink   progress.Sink
	opened atomic.Bool // Compressed was called: the bytes were sent
}

func (l *storeLayer) id() string { return shortID(l.desc.Digest.Encoded()) }

func (l *storeLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.desc.Digest.String()) }
func (l *storeLayer) DiffID() (v1.Hash, error) { return v1.NewHash(l.diffID.String()) }
func (l *storeLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	l.opened.Store(true)
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&countingReader{r: rc, id: l.id(), status: "Pushing", total: l.desc.Size, sink: l.sink}, rc}, nil
}

func (l *storeLayer) open() (io.ReadCloser, error) {
	if l.source != "" {
		return l.st.OpenBlob(l.source)
	}
	// The remembered blob was pruned: compress the plain one again, as it
	// streams. The writers are deterministic, so the bytes are the digest.
	rc, err := l.st.OpenBlob(l.plain)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		cw, err := compression.NewWriter(pw, l.comp)
		if err == nil {
			if _, err = io.Copy(cw, rc); err != nil {
				compression.Abort(cw)
			} else {
				err = cw.Close()
			}
		}
		rc.Close()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

func (l *storeLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	dec, err := compression.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{dec, closers{dec, rc}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// rawManifest is a manifest pushed alone, its blobs being in the
// repository already.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// outImage is the image as it goes out: the store's config, and a manifest
// naming the layers as they are sent, without snap's own annotations.
type outImage struct {
	config   []byte
	manifest []byte
	layers   map[v1.Hash]*storeLayer
}

func newOutImage(img *store.Image, layers []*storeLayer) (v1.Image, error) {
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.ID, Size: int64(len(img.RawConfig))},
		Layers:      []ocispec.Descriptor{},
		Annotations: img.Manifest.Annotations,
	}
	o := &outImage{config: img.RawConfig, layers: map[v1.Hash]*storeLayer{}}
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.desc.MediaType, Digest: l.desc.Digest, Size: l.desc.Size})
		h, err := l.Digest()
		if err != nil {
			return nil, err
		}
		o.layers[h] = l
	}
	var err error
	if o.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(o)
}

func (o *outImage) RawConfigFile() ([]byte, error)      { return o.config, nil }
func (o *outImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (o *outImage) RawManifest() ([]byte, error)        { return o.manifest, nil }

func (o *outImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := o.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
}
