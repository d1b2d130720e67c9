package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"snap/commit"
	"snap/container"
	"snap/diff"
	"snap/registry"
	"snap/source"
	"snap/sourcing"
	"snap/store"
)

// resolveBase finds the base: a container (any source.Parse scheme, or a
// snap container's NAME when no image has that name) is committed as it is,
// paused for the walk; an image is looked up, and pulled when missing and
// its reference names a registry.
func (c *run) resolveBase() error {
	ref := c.f.Base
	c.baseName = ref
	var src sourcing.Source
	if strings.Contains(ref, "://") {
		s, err := source.Parse(ref, c.opts.Source)
		if err != nil {
			return fmt.Errorf("base %s: %w", ref, err)
		}
		src = s
	} else if c.opts.Pull && registry.NamesRegistry(ref) {
		ropts, done := c.registryOptions()
		p, err := registry.Pull(c.ctx, c.st, ref, ropts)
		done()
		if err != nil {
			return fmt.Errorf("base %w", err)
		}
		c.base = p.Image
	} else {
		img, err := c.st.Lookup(ref)
		switch {
		case err == nil:
			c.base = img
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("base %w", err)
		case c.isContainer(ref):
			src = container.Committable{Name: ref, Pause: true}
		default:
			ropts, done := c.registryOptions()
			img, err := registry.Ensure(c.ctx, c.st, ref, ropts, func() {
				fmt.Fprintf(c.out, "Unable to find image '%s' locally\n", ref)
			})
			done()
			if err != nil {
				return fmt.Errorf("base %w", err)
			}
			c.base = img
		}
	}
	if src != nil {
		fmt.Fprintf(c.out, "Base : committing %s as it is\n", ref)
		img, err := commit.Commit(c.ctx, c.st, src, commit.Options{SourceDateEpoch: c.opts.SourceDateEpoch, Now: c.opts.Now})
		if err != nil {
			return fmt.Errorf("base %w", err)
		}
		c.base = img
	}
	if c.base.Err != nil {
		return fmt.Errorf("base %s: %w", ref, c.base.Err)
	}
	c.baseDigest = c.base.ManifestDesc.Digest
	fmt.Fprintf(c.out, "Base : %s (%s)\n", ref, c.baseDigest)
	return nil
}

func (c *run) isContainer(name string) bool {
	_, err := c.m.Get(name)
	return err == nil
}

// step runs one step on cur, or finds what it made before.
func (c *run) step(i int, cur *store.Image) (*store.Image, error) {
	s := c.f.Steps[i]
	key, err := c.stepKey(i, cur)
	if err != nil {
		return nil, err
	}
	if img := c.cached(key); img != nil {
		return img, nil
	}
	var img *store.Image
	switch {
	case s.Run != "":
		img, err = c.inContainer(cur, "/bin/sh -c "+s.Run, c.rules, func(meta *container.Meta) error {
			code, err := c.start(meta, container.Stdio{Out: c.out, Err: c.out})
			if err != nil {
				return err
			}
			if code != 0 {
				return fmt.Errorf("%w: the command exited %d", ErrStep, code)
			}
			return nil
		}, []string{"/bin/sh", "-c", s.Run})
	case s.Copy != nil:
		img, err = c.inContainer(cur, describe(s), c.rules, func(meta *container.Meta) error {
			root, err := c.m.Mount(meta)
			if err != nil {
				return err
			}
			if err := CopyInto(root, c.f.Dir, *s.Copy); err != nil {
				return fmt.Errorf("%w: %w", ErrStep, err)
			}
			return nil
		}, nil)
	default:
		img, err = c.putConfig(cur, describe(s), "", func(cfg *dockerspec.DockerOCIImageConfig) { s.applyConfig(cfg) })
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.out, " ---> %s\n", short(img))
	if err := c.state.saveStep(key, img.ID); err != nil {
		return nil, err
	}
	return img, nil
}

// start runs meta's process to its end, as Start does, but ends it when
// the capture is cancelled (Ctrl-C): Start forwards the signal to the
// init, which a shell as PID 1 ignores, so a step would run on to its end,
// and a build stops its RUN. The kill is sent until Start returns, so a
// cancel that comes while the init starts still ends it.
func (c *run) start(meta *container.Meta, stdio container.Stdio) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, c.ctx.Err()
	}
	done := make(chan struct{})
	stop := context.AfterFunc(c.ctx, func() {
		for {
			c.m.Kill(meta, unix.SIGKILL)
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	code, err := c.m.Start(c.ctx, meta, stdio, false)
	close(done)
	stop()
	if c.ctx.Err() != nil {
		return code, c.ctx.Err()
	}
	return code, err
}

// cached is the image a step of this key made before, said as a build
// says it; nil when there is none or the cache is not to be used.
func (c *run) cached(key string) *store.Image {
	if c.opts.NoCache {
		return nil
	}
	img := c.state.lookupStep(c.st, key)
	if img != nil {
		fmt.Fprintf(c.out, " ---> Using cache\n ---> %s\n", short(img))
	}
	return img
}

func short(img *store.Image) string { return img.ID.Encoded()[:12] }

// stepKey names what a step makes from cur: the step as it runs
// (variables substituted, the sources' content for a copy), the network,
// the variables the runs see, and the rules its layer is filtered by.
func (c *run) stepKey(i int, cur *store.Image) (string, error) {
	k, err := c.f.StepKey(i, cur.ID.String())
	if err != nil {
		return "", err
	}
	// SOURCE_DATE_EPOCH too: it fixes the step image's times, and a step
	// image made without it must not serve a capture that promises the
	// same ID every time.
	return keyHex("step/v1", k.String(), rulesString(c.rules), epochString(c.opts.SourceDateEpoch)), nil
}

func rulesString(rules []diff.Rule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "%d %s\n", r.Action, r.Pattern)
	}
	return b.String()
}

// inContainer makes a snap container of cur (never started unless do
// starts it), lets do change it, and commits its changes as one layer
// filtered by rules, with cur's config: like a docker build step, a run
// leaves the image's command and environment as they were.
func (c *run) inContainer(cur *store.Image, createdBy string, rules []diff.Rule, do func(*container.Meta) error, args []string) (*store.Image, error) {
	none := ""
	if args == nil {
		args = []string{"true"} // never run: a container needs a command
	}
	meta, err := c.create(container.CreateOptions{Image: cur.ID.String(), Args: args, Entrypoint: &none,
		Env: c.f.RunEnv(), Network: c.f.Network})
	if err != nil {
		return nil, err
	}
	defer c.m.Remove(meta, true)
	if err := do(meta); err != nil {
		return nil, err
	}
	return commit.Commit(c.ctx, c.st, stepSource{Source: container.Committable{Name: meta.Name}, createdBy: createdBy},
		commit.Options{SourceDateEpoch: c.opts.SourceDateEpoch, Now: c.opts.Now, Exclude: rules,
			Annotations: map[string]string{AnnotationStep: createdBy}})
}

// stepSource is a container committed as a build step: its layer on its
// image's config, and the step as created_by.
type stepSource struct {
	sourcing.Source
	createdBy string
}

func (s stepSource) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	o, err := s.Source.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	o.Config, o.CreatedBy = nil, s.createdBy
	return o, nil
}

// putConfig stores cur with its config changed by edit and one more
// history entry (no layer), as docker build records ENV or USER.
func (c *run) putConfig(cur *store.Image, createdBy, comment string, edit func(*dockerspec.DockerOCIImageConfig)) (*store.Image, error) {
	raw, err := c.editConfig(cur, createdBy, comment, "", edit)
	if err != nil {
		return nil, err
	}
	imgs, err := c.st.PutAll(c.ctx, []store.NewImage{{Config: raw, Layers: cur.Manifest.Layers, Annotations: map[string]string{AnnotationStep: createdBy}}})
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// The author goes on the capture's own last entry only: a step's image is
// cached across captures whose author may differ (docker build leaves its
// steps' entries without one too).
func (c *run) editConfig(cur *store.Image, createdBy, comment, author string, edit func(*dockerspec.DockerOCIImageConfig)) ([]byte, error) {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cur.RawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", short(cur), err)
	}
	created := c.opts.now()
	edit(&cfg.Config)
	cfg.Created = &created
	if author != "" {
		cfg.Author = author
	}
	cfg.History = append(cfg.History, ocispec.History{Created: &created, Author: author, CreatedBy: createdBy, Comment: comment, EmptyLayer: true})
	return json.Marshal(cfg)
}

// applyConfig is what an env, workdir or user step does to the config.
func (s Step) applyConfig(cfg *dockerspec.DockerOCIImageConfig) {
	for _, kv := range s.Env {
		k, _, _ := strings.Cut(kv, "=")
		cfg.Env = slices.DeleteFunc(cfg.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") || e == k })
		cfg.Env = append(cfg.Env, kv)
	}
	if s.Workdir != "" {
		cfg.WorkingDir = path.Join("/", cfg.WorkingDir, s.Workdir)
		if path.IsAbs(s.Workdir) {
			cfg.WorkingDir = path.Clean(s.Workdir)
		}
	}
	if s.User != "" {
		cfg.User = s.User
	}
}

// clean generalizes cur and removes what the file's exclude entries
// marked whiteout, as one more layer: what the base (or a step before the
// rules could see it) left of those paths. Its layer is not filtered: its
// whiteouts and emptied files are the point.
func (c *run) clean(cur *store.Image) (*store.Image, error) {
	var gone []Rule
	for _, e := range c.f.Exclude {
		if e.Whiteout {
			gone = append(gone, Rule{Item: "exclude", Pattern: e.Path})
		}
	}
	if !c.f.Generalize && len(gone) == 0 {
		return cur, nil
	}
	what := "snap capture: exclude"
	if c.f.Generalize {
		what = "snap capture: generalize"
	}
	fmt.Fprintf(c.out, "Clean : %s\n", strings.TrimPrefix(what, "snap capture: "))
	var patterns []string
	for _, r := range gone {
		patterns = append(patterns, r.Pattern)
	}
	key := keyHex("clean/v1", cur.ID.String(), fmt.Sprint(c.f.Generalize), generalizeSet(), strings.Join(patterns, "\n"), epochString(c.opts.SourceDateEpoch))
	if img := c.cached(key); img != nil {
		return img, nil
	}
	img, err := c.inContainer(cur, what, nil, func(meta *container.Meta) error {
		root, err := c.m.Mount(meta)
		if err != nil {
			return err
		}
		if c.f.Generalize {
			rep, err := Generalize(root)
			if err != nil {
				return err
			}
			if len(rep.Emptied)+len(rep.Removed) > 0 {
				fmt.Fprintf(c.out, " ---> generalized: %d emptied, %d removed\n", len(rep.Emptied), len(rep.Removed))
			}
			for _, sk := range rep.Skipped {
				fmt.Fprintf(c.out, " ---> left alone: %s\n", sk)
			}
		}
		if len(gone) > 0 {
			return removeMatching(root, gone, c.out)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if len(img.Manifest.Layers) == len(cur.Manifest.Layers) {
		// Nothing was left to clean: no layer, and no history entry
		// saying otherwise. The empty step image goes again.
		// The empty step image stays (hidden, a step image): removing it
		// by ID could take an equal image another capture just made.
		fmt.Fprintf(c.out, " ---> nothing to clean\n")
		img = cur
	} else {
		fmt.Fprintf(c.out, " ---> %s\n", short(img))
	}
	if err := c.state.saveStep(key, img.ID); err != nil {
		return nil, err
	}
	return img, nil
}

// removeMatching removes what rules match under root, a container's
// rootfs mounted on the host. The walk never follows a symlink (WalkDir
// lstats), and the removal goes through an os.Root, so a path swapped for a
// symlink cannot take it outside.
func removeMatching(root string, rules []Rule, out io.Writer) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		if _, ok := MatchRules(rules, "/"+filepath.ToSlash(rel)); !ok {
			return nil
		}
		if err := r.RemoveAll(rel); err != nil {
			return err
		}
		fmt.Fprintf(out, " ---> removed /%s\n", filepath.ToSlash(rel))
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
}

// generalizeSet names what Generalize does, for the keys of what it made:
// a snap whose set differs must not take an image the old set cleaned.
func generalizeSet() string {
	var b strings.Builder
	for _, r := range Rules() {
		fmt.Fprintf(&b, "%s %s %v %v\n", r.Item, r.Pattern, r.Truncate, r.Keep)
	}
	return b.String()
}
