package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/commit"
	"snap/container"
	"snap/diff"
	"snap/drift"
	"snap/registry"
	"snap/sourcing"
	"snap/store"
)

// Manifest annotations a capture writes.
const (
	// AnnotationFile holds the capture file's digest (its bytes and the
	// variables it was run with), on the result.
	AnnotationFile = "dev.snap.capture.file.digest"
	// AnnotationStep marks a step's image, an intermediate that the step
	// cache keeps (as docker build's); `snap images` lists them with -a.
	AnnotationStep = "dev.snap.capture.step"
)

// squash replaces the steps' layers of cur with one layer holding what they
// made together (docker build --squash): cur's merged filesystem, mounted
// read-only through a container that never runs, compared with the base.
// The steps' history entries stay, marked empty.
func (c *run) squash(cur *store.Image) (*store.Image, error) {
	fmt.Fprintf(c.out, "Squash : %d layers into one\n", len(cur.Manifest.Layers)-len(c.base.Manifest.Layers))
	none := ""
	meta, err := c.create(container.CreateOptions{Image: cur.ID.String(), Args: []string{"true"}, Entrypoint: &none})
	if err != nil {
		return nil, err
	}
	defer c.m.Remove(meta, true)
	root, err := c.m.Mount(meta)
	if err != nil {
		return nil, err
	}
	lowers, err := c.st.LayerDirs(c.base)
	if err != nil {
		return nil, err
	}
	// The init layer is a lower too: its stubs (/etc/hosts...) are in the
	// merged view but are no change of the image.
	lowers = append([]string{c.m.Init(meta.ID)}, lowers...)
	one, err := commit.Commit(c.ctx, c.st, walkSource{walker: diff.Rootfs{Root: root, Lowers: lowers}, base: c.base},
		commit.Options{SourceDateEpoch: c.opts.SourceDateEpoch, Now: c.opts.Now})
	if err != nil {
		return nil, err
	}
	defer c.st.Remove(one.ID.String()) // an intermediate: its layer lives on in the result
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cur.RawConfig, &cfg); err != nil {
		return nil, err
	}
	created := c.opts.now()
	for i := len(c.base.Config.History); i < len(cfg.History); i++ {
		cfg.History[i].EmptyLayer = true
	}
	// The steps may have changed nothing the layer keeps (env steps only,
	// or only excluded paths): then there is no layer, and its entry says so.
	noLayer := len(one.Manifest.Layers) == len(c.base.Manifest.Layers)
	cfg.History = append(cfg.History, ocispec.History{Created: &created,
		CreatedBy: fmt.Sprintf("snap capture: squash %d steps", len(c.f.Steps)), EmptyLayer: noLayer})
	cfg.RootFS.DiffIDs = one.Config.RootFS.DiffIDs
	cfg.Created = &created
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	imgs, err := c.st.PutAll(c.ctx, []store.NewImage{{Config: raw, Layers: one.Manifest.Layers}})
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// walkSource is a walker over a base, as a commit reads it.
type walkSource struct {
	walker diff.Walker
	base   *store.Image
}

func (w walkSource) String() string { return "the steps' merged filesystem" }

func (w walkSource) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	return &sourcing.Opened{Changes: w.walker, Base: w.base}, nil
}

// final is cur with the file's commit settings (changes, labels, author,
// message) and the capture's provenance as manifest annotations; untagged
// until verified.
func (c *run) final(cur *store.Image, created time.Time) (*store.Image, error) {
	var cerr error
	raw, err := c.editConfig(cur, "snap capture", c.f.Commit.Message, c.f.Commit.Author, func(cfg *dockerspec.DockerOCIImageConfig) {
		cerr = commit.ApplyChanges(cfg, c.f.Commit.Changes)
		if len(c.f.Commit.Labels) > 0 {
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			maps.Copy(cfg.Labels, c.f.Commit.Labels)
		}
	})
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	c.annotations = map[string]string{
		ocispec.AnnotationCreated:         created.Format(time.RFC3339),
		ocispec.AnnotationBaseImageName:   c.baseName,
		ocispec.AnnotationBaseImageDigest: c.baseDigest.String(),
		AnnotationFile:                    c.f.Digest.String(),
	}
	if a := c.f.Commit.Author; a != "" {
		c.annotations[ocispec.AnnotationAuthors] = a
	}
	if v := c.f.Version; v != "" {
		c.annotations[ocispec.AnnotationVersion] = v
	}
	imgs, err := c.st.PutAll(c.ctx, []store.NewImage{{Config: raw, Layers: cur.Manifest.Layers, Annotations: c.annotations}})
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// verify runs each verify command in a fresh container of img; the first
// to fail stops the capture with its output shown.
func (c *run) verify(img *store.Image) error {
	none := ""
	for i, v := range c.f.Verify {
		fmt.Fprintf(c.out, "Verify %d/%d : %s\n", i+1, len(c.f.Verify), v.Run)
		meta, err := c.create(container.CreateOptions{Image: img.ID.String(), Args: []string{"/bin/sh", "-c", v.Run},
			Entrypoint: &none, Env: c.f.RunEnv(), Network: c.f.Network})
		if err != nil {
			return fmt.Errorf("verify %d: %w", i+1, err)
		}
		var out bytes.Buffer
		code, err := c.start(meta, container.Stdio{Out: &out, Err: &out})
		c.m.Remove(meta, true)
		if err != nil {
			return fmt.Errorf("verify %d: %w", i+1, err)
		}
		if code != 0 {
			c.out.Write(out.Bytes())
			return fmt.Errorf("%w: %q exited %d; image %s left untagged", ErrVerify, v.Run, code, short(img))
		}
	}
	return nil
}

// tag points every tag at the result at once, after noting what the first
// tag named before for the drift.
func (c *run) tag(res *Result, tags []string) error {
	var prevTag string
	for _, t := range tags {
		prev, err := c.st.Lookup(t)
		if err == nil && prev.Err == nil && prev.ID != res.Image.ID {
			res.Previous, prevTag = prev, t
			break
		}
	}
	if len(tags) > 0 {
		imgs, err := c.st.PutAll(c.ctx, []store.NewImage{{Config: res.Image.RawConfig, Layers: res.Image.Manifest.Layers,
			Annotations: c.annotations, Tags: tags}})
		if err != nil {
			return err
		}
		res.Image = imgs[0]
		res.Tags = imgs[0].Tags
		fmt.Fprintf(c.out, "Tagged : %s\n", strings.Join(res.Tags, ", "))
	}
	if res.Previous != nil {
		changes, err := drift.Compare(c.ctx, c.st, res.Previous, res.Image)
		if err != nil {
			return fmt.Errorf("drift from %s: %w", short(res.Previous), err)
		}
		res.Drift = changes
		fmt.Fprintf(c.out, "Drift from %s (%s): %s\n", prevTag, short(res.Previous), plural(len(changes), "change"))
		for _, ch := range changes {
			fmt.Fprintln(c.out, ch)
		}
	}
	return nil
}

// push sends the result to each push target: a reference with a tag as
// it is, a repository once per tag of the result (latest when none).
func (c *run) push(res *Result, targets []string) error {
	if c.opts.NoPush {
		return nil
	}
	// By its manifest digest, not a tag: another command may move a tag
	// while this one pushes, and what goes up must be what was verified.
	name := res.Image.ManifestDesc.Digest.String()
	for _, target := range targets {
		for _, ref := range pushRefs(target, res.Tags) {
			fmt.Fprintf(c.out, "Push : %s\n", ref)
			ropts, done := c.registryOptions()
			p, err := registry.Push(c.ctx, c.st, name, ref, ropts)
			done()
			if err != nil {
				return err
			}
			res.Pushed = append(res.Pushed, ref+"@"+p.Digest.String())
			fmt.Fprintf(c.out, " ---> %s (%s sent, %d mounted)\n", p.Digest, plural(p.Sent, "layer"), p.Mounted)
		}
	}
	return nil
}

// pushRefs expands a push target: one naming a tag or digest stays as it
// is; a bare repository takes each of tags' tag parts.
func pushRefs(target string, tags []string) []string {
	last := target[strings.LastIndex(target, "/")+1:]
	if strings.ContainsAny(last, ":@") {
		return []string{target}
	}
	var refs []string
	for _, t := range tags {
		if i := strings.LastIndex(t, ":"); i >= 0 && !strings.Contains(t[i:], "/") {
			refs = append(refs, target+t[i:])
		}
	}
	if len(refs) == 0 {
		refs = []string{target + ":latest"}
	}
	return refs
}

// unchanged is the capture that makes nothing: the file and the base are
// those of the last capture, whose image is still there. Its tags are put
// back where they do not point at it (a date tag of another day, one
// removed since): no image is made.
func (c *run) unchanged(img *store.Image, rec *record, tags []string) (*Result, error) {
	fmt.Fprintf(c.out, "Unchanged : the capture file and the base (%s) are as at %s\n", c.baseDigest, rec.Created.Format(time.RFC3339))
	var missing []string
	for _, t := range tags {
		if cur, err := c.st.Lookup(t); err != nil || cur.ManifestDesc.Digest != img.ManifestDesc.Digest {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		imgs, err := c.st.PutAll(c.ctx, []store.NewImage{{Config: img.RawConfig, Layers: img.Manifest.Layers,
			Annotations: img.Manifest.Annotations, Tags: missing}})
		if err != nil {
			return nil, err
		}
		img = imgs[0]
		fmt.Fprintf(c.out, "Tagged : %s\n", strings.Join(missing, ", "))
	}
	return &Result{Image: img, Tags: tags, Unchanged: true}, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
