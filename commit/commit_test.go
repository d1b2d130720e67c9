package commit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

func TestApplyChanges(t *testing.T) {
	base := func() dockerspec.DockerOCIImageConfig {
		var c dockerspec.DockerOCIImageConfig
		c.Cmd, c.Env, c.WorkingDir = []string{"/bin/sh"}, []string{"PATH=/bin", "A=old"}, "/srv"
		return c
	}
	tests := []struct {
		changes []string
		check   func(c dockerspec.DockerOCIImageConfig) bool
	}{
		{[]string{`CMD ["/app","--x"]`}, func(c dockerspec.DockerOCIImageConfig) bool { return slices.Equal(c.Cmd, []string{"/app", "--x"}) }},
		{[]string{`CMD echo hi`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Cmd, []string{"/bin/sh", "-c", "echo hi"})
		}},
		{[]string{`ENTRYPOINT ["/e"]`}, func(c dockerspec.DockerOCIImageConfig) bool { return c.Cmd == nil && c.Entrypoint[0] == "/e" }},
		{[]string{`CMD ["x"]`, `ENTRYPOINT ["/e"]`}, func(c dockerspec.DockerOCIImageConfig) bool { return c.Cmd[0] == "x" }},
		{[]string{`ENV A=new B="two words"`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return slices.Equal(c.Env, []string{"PATH=/bin", "A=new", "B=two words"})
		}},
		{[]string{`EXPOSE 80 53/udp`}, func(c dockerspec.DockerOCIImageConfig) bool {
			_, a := c.ExposedPorts["80/tcp"]
			_, b := c.ExposedPorts["53/udp"]
			return a && b
		}},
		{[]string{`WORKDIR app`, `USER 1000:1000`, `STOPSIGNAL SIGINT`, `VOLUME ["/data"]`, `LABEL a=b`}, func(c dockerspec.DockerOCIImageConfig) bool {
			_, v := c.Volumes["/data"]
			return c.WorkingDir == "/srv/app" && c.User == "1000:1000" && c.StopSignal == "SIGINT" && v && c.Labels["a"] == "b"
		}},
		{[]string{`ONBUILD RUN make`, `HEALTHCHECK --interval=5s CMD true`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return c.OnBuild[0] == "RUN make" && c.Healthcheck.Test[0] == "CMD-SHELL" && c.Healthcheck.Interval.Seconds() == 5
		}},
	}
	for _, tc := range tests {
		c := base()
		if err := ApplyChanges(&c, tc.changes); err != nil || !tc.check(c) {
			t.Errorf("%q: %+v, %v", tc.changes, c, err)
		}
	}
	for _, bad := range []string{"RUN true", "FROM x", "COPY a b", "ENV", "BOGUS x", ""} {
		c := base()
		if err := ApplyChanges(&c, []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

type failing struct{ diff.Walker }

func (failing) Walk(ctx context.Context, fn func(diff.Change) error) error {
	return errors.New("walk broke half way")
}

type failSource struct{ closed *bool }

func (f failSource) String() string { return "test://fail" }
func (f failSource) Open(context.Context, *store.Store) (*sourcing.Opened, error) {
	return &sourcing.Opened{Changes: failing{}, Close: func() error { *f.closed = true; return nil }}, nil
}

// A commit that fails half way leaves no blob, no index entry, and still
// closes (resumes) its source.
func TestFailedCommitLeavesNothing(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	if _, err := Commit(context.Background(), st, failSource{&closed}, Options{Tag: "x:1"}); err == nil {
		t.Fatal("commit succeeded")
	}
	if !closed {
		t.Error("source not closed after a failed commit")
	}
	ents, _ := os.ReadDir(filepath.Join(st.Root(), "blobs/sha256"))
	idx, _ := st.Index()
	if len(ents) != 0 || len(idx.Manifests) != 0 {
		t.Fatalf("left %d blobs and %d index entries", len(ents), len(idx.Manifests))
	}
}

func TestCommitDirHistoryAndEmptyLayer(t *testing.T) {
	st, _ := store.Open(t.TempDir())
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	first, err := Commit(context.Background(), st, sourcing.Dir{Root: root}, Options{Tag: "a:1", Author: "me", Message: "one"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Commit(context.Background(), st, sourcing.Dir{Root: root, Base: "a:1"}, Options{Tag: "a:2", Message: "none"})
	if err != nil {
		t.Fatal(err)
	}
	h := second.Config.History
	if len(h) != 2 || h[0].Author != "me" || h[0].Comment != "one" || !h[1].EmptyLayer || h[1].Comment != "none" {
		t.Fatalf("history %+v", h)
	}
	if len(second.Config.RootFS.DiffIDs) != 1 || len(second.Manifest.Layers) != 1 || second.Manifest.Layers[0].Digest != first.Manifest.Layers[0].Digest {
		t.Fatalf("empty commit changed layers: %+v", second.Manifest.Layers)
	}
	if second.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("default compression: %s", second.Manifest.Layers[0].MediaType)
	}
	squashed, err := Commit(context.Background(), st, sourcing.Dir{Root: root, Base: "a:2"}, Options{Tag: "a:sq", Squash: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(squashed.Manifest.Layers) != 1 || len(squashed.Config.History) != 3 || !squashed.Config.History[0].EmptyLayer || squashed.Config.History[2].EmptyLayer {
		t.Fatalf("squash: %d layers, history %+v", len(squashed.Manifest.Layers), squashed.Config.History)
	}
}

// resumeFails is a directory whose release fails, as a container's resume
// can; it records whether the image was already in the store by then.
type resumeFails struct {
	sourcing.Dir
	st     *store.Store
	tagged *bool
}

func (r resumeFails) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	o, err := r.Dir.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	o.Close = func() error {
		_, err := r.st.Lookup("x:1")
		*r.tagged = err == nil
		return errors.New("resume: the freezer is stuck")
	}
	return o, nil
}

// TestResumeFailureTagsNothing: the source is released as soon as its
// layer is written, before the image is stored (a paused container runs
// again sooner), so a resume that fails fails the commit with no tag left
// behind.
func TestResumeFailureTagsNothing(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	tagged := false
	_, err = Commit(context.Background(), st, resumeFails{sourcing.Dir{Root: root}, st, &tagged}, Options{Tag: "x:1"})
	if err == nil || !strings.Contains(err.Error(), "freezer is stuck") {
		t.Fatalf("commit: %v, want the resume's error", err)
	}
	if tagged {
		t.Error("the image was stored before the source was released")
	}
	if _, err := st.Lookup("x:1"); err == nil {
		t.Error("x:1 is tagged after the commit failed")
	}
}
