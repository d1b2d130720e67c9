// Package capture makes a golden image from a capture file in one call (see
// File): the base resolved (a local image, pulled, or a container committed
// as it is), each step run in a snap container on the result so far and
// committed as its own layer, cached by parent image and step; excluded and
// generalized paths kept out of every layer; the result verified in a fresh
// container, and only then tagged, compared with what its tag held before,
// and pushed. A capture of an unchanged file on an unchanged base makes
// nothing and gives the image it gave before.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"snap/container"
	"snap/diff"
	"snap/drift"
	"snap/progress"
	"snap/registry"
	"snap/source"
	"snap/store"
)

// Sentinels a caller can tell apart.
var (
	// ErrStep is a step that failed (a command exiting non-zero, a copy
	// that could not be made).
	ErrStep = errors.New("step failed")
	// ErrVerify is a verify command that failed: nothing was tagged.
	ErrVerify = errors.New("verify failed")
)

// Options are what the caller decides beyond the file.
type Options struct {
	// Out receives progress and the steps' output, as a build shows it;
	// nil discards it.
	Out io.Writer
	// SourceDateEpoch fixes every created time and clamps mtimes: the same
	// file on the same base then gives the same image ID.
	SourceDateEpoch *time.Time
	// NoCache runs every step again and ignores the last capture.
	NoCache bool
	// Pull fetches a base named by a registry reference even when the
	// store has it (docker build --pull): a newer base is a new capture.
	Pull bool
	// NoPush leaves the file's push targets alone.
	NoPush bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registry is how registries are reached: a base to pull, the push targets.
	Registry registry.Options
	// Progress, if set, gives a display for each pull and push (docker's
	// per-layer lines on a terminal); it is closed before the capture
	// writes to Out again.
	Progress func() progress.Display
	// Source is how container bases are reached (docker://, containerd://...).
	Source source.Options
}

// Result is what a capture made.
type Result struct {
	Image *store.Image
	// Tags are the tags now pointing at Image.
	Tags []string
	// Unchanged is set when nothing was made: the file and the base are as
	// they were at the last capture, whose image this is.
	Unchanged bool
	// Previous is what the first of the file's tags named before, when it
	// named another image; Drift is the difference from it.
	Previous *store.Image
	Drift    []drift.Change
	// Pushed are the references pushed, with their manifest digests.
	Pushed []string
}

func (o Options) now() time.Time {
	if o.SourceDateEpoch != nil {
		return o.SourceDateEpoch.UTC()
	}
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

func (o Options) out() io.Writer {
	if o.Out == nil {
		return io.Discard
	}
	return o.Out
}

// Capture runs the capture file f (see Parse) against st.
func Capture(ctx context.Context, st *store.Store, f *File, opts Options) (*Result, error) {
	c := &run{ctx: ctx, st: st, f: f, opts: opts, out: opts.out(), state: stateOf(st), m: container.New(st)}
	res, err := c.capture()
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return res, nil
}

// run is one capture in progress.
type run struct {
	ctx   context.Context
	st    *store.Store
	f     *File
	opts  Options
	out   io.Writer
	state state
	m     *container.Manager
	rules []diff.Rule // what no step's layer carries
	base  *store.Image
	// baseName and baseDigest are the provenance of base: the name the
	// file gave, and its manifest digest.
	baseName   string
	baseDigest digest.Digest
	// annotations are the result's provenance (see final).
	annotations map[string]string
}

func (c *run) capture() (*Result, error) {
	if len(c.f.Undeclared) > 0 {
		fmt.Fprintf(c.out, "[Warning] variables given but not declared in the file: %s\n", strings.Join(c.f.Undeclared, ", "))
	}
	c.sweep()
	if err := c.resolveBase(); err != nil {
		return nil, err
	}
	created := c.opts.now()
	sources, err := c.f.SourcesDigest()
	if err != nil {
		return nil, err
	}
	runKey := keyHex("capture/v1", c.f.Digest.String(), sources.String(), c.baseDigest.String(), epochString(c.opts.SourceDateEpoch),
		rulesString(layerRules(c.f)), generalizeSet())
	tags, err := c.f.RenderTags(TagData{Time: created, BaseDigest: c.baseDigest, BaseName: c.baseName})
	if err != nil {
		return nil, err
	}
	if !c.opts.NoCache {
		if rec, ok := c.state.lookupRun(runKey); ok {
			if img, err := c.st.Lookup(rec.Image.String()); err == nil && img.Err == nil {
				return c.unchanged(img, rec, tags)
			}
		}
	}
	c.rules = layerRules(c.f)
	cur := c.base
	total := len(c.f.Steps)
	for i, s := range c.f.Steps {
		fmt.Fprintf(c.out, "Step %d/%d : %s\n", i+1, total, describe(s))
		if cur, err = c.step(i, cur); err != nil {
			return nil, fmt.Errorf("step %d/%d (line %d) %s: %w", i+1, total, s.Line, s.Kind(), err)
		}
	}
	if cur, err = c.clean(cur); err != nil {
		return nil, err
	}
	if c.f.Commit.Squash && len(c.f.Steps) > 0 {
		if cur, err = c.squash(cur); err != nil {
			return nil, fmt.Errorf("squash: %w", err)
		}
	}
	final, err := c.final(cur, created)
	if err != nil {
		return nil, err
	}
	if err := c.verify(final); err != nil {
		return nil, err
	}
	res := &Result{Image: final}
	if err := c.tag(res, tags); err != nil {
		return nil, err
	}
	push, err := c.f.RenderPush(TagData{Time: created, BaseDigest: c.baseDigest, BaseName: c.baseName})
	if err != nil {
		return nil, err
	}
	if err := c.push(res, push); err != nil {
		return nil, err
	}
	// A capture that skipped its pushes is not the whole capture: the
	// next one must not call itself unchanged and push nothing.
	if c.opts.NoPush && len(push) > 0 {
		return res, nil
	}
	if err := c.state.saveRun(runKey, record{Image: final.ID, Created: time.Now().UTC()}); err != nil {
		return nil, err
	}
	return res, nil
}

// describe is a step as a build prints it.
func describe(s Step) string {
	switch s.Kind() {
	case "copy":
		return "COPY " + s.Copy.Src + " " + s.Copy.Dst
	case "env":
		return "ENV " + strings.Join(s.Env, " ")
	case "workdir":
		return "WORKDIR " + s.Workdir
	case "user":
		return "USER " + s.User
	}
	return "RUN " + s.Run
}

// layerRules are what no step's layer carries: the file's excludes and,
// with generalize, Generalize's set (a log or the machine ID written
// empty). A generalize pattern that has exceptions (apt's lists but their
// lock) is left to the clean step, as the layer filter has none.
func layerRules(f *File) []diff.Rule {
	var rules []diff.Rule
	for _, e := range f.Exclude {
		rules = append(rules, diff.Rule{Pattern: e.Path, Action: diff.Omit})
	}
	if !f.Generalize {
		return rules
	}
	set := Rules()
	for _, r := range set {
		if r.Keep || slices.ContainsFunc(set, func(k Rule) bool { return k.Keep && MatchGlob(r.Pattern, k.Pattern) }) {
			continue
		}
		a := diff.Omit
		if r.Truncate {
			a = diff.Truncate
		}
		rules = append(rules, diff.Rule{Pattern: r.Pattern, Action: a})
	}
	return rules
}

func epochString(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// registryOptions are the caller's, with a fresh progress display when the
// caller gave one; done closes it.
func (c *run) registryOptions() (opts registry.Options, done func()) {
	opts = c.opts.Registry
	if c.opts.Progress == nil {
		return opts, func() {}
	}
	d := c.opts.Progress()
	opts.Progress = d
	return opts, func() { d.Close() }
}
