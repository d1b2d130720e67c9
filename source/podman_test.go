package source

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// changes is a walker of fixed changes, for the wrappers.
type changes []diff.Change

func (cs changes) Walk(ctx context.Context, fn func(diff.Change) error) error {
	for _, c := range cs {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func list(t *testing.T, w diff.Walker) []string {
	t.Helper()
	var got []string
	if err := w.Walk(context.Background(), func(c diff.Change) error { got = append(got, c.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPodmanLayer: podman's own stubs never reach the layer; a stub
// directory (/run) comes only when the container made something in it,
// /etc only when the container changed it or something in it.
func TestPodmanLayer(t *testing.T) {
	root := t.TempDir()
	lower, upper := filepath.Join(root, "lower"), filepath.Join(root, "upper")
	for _, d := range []string{lower + "/etc", upper + "/etc", upper + "/run", upper + "/tmp"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := func(p string) os.FileInfo {
		fi, err := os.Lstat(filepath.Join(upper, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if err := os.WriteFile(filepath.Join(upper, "etc/hosts"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	stubs := changes{
		{Kind: diff.Changed, Path: "etc", Info: st("etc")},
		{Kind: diff.Added, Path: "etc/hostname", Info: st("etc/hosts")},
		{Kind: diff.Added, Path: "etc/hosts", Info: st("etc/hosts")},
		{Kind: diff.Added, Path: "run", Info: st("run")},
		{Kind: diff.Added, Path: "run/.containerenv", Info: st("etc/hosts")},
	}
	tests := []struct {
		name string
		more changes
		want []string
	}{
		{"stubs only", nil, nil},
		{"a file in /tmp", changes{{Kind: diff.Added, Path: "tmp/x", Info: st("etc/hosts")}}, []string{"A /tmp/x"}},
		{"a file in /run", changes{{Kind: diff.Added, Path: "run/app.pid", Info: st("etc/hosts")}}, []string{"A /run", "A /run/app.pid"}},
		{"a file in /etc", changes{{Kind: diff.Added, Path: "etc/new", Info: st("etc/hosts")}}, []string{"C /etc", "A /etc/new"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := slices.Clone(stubs)
			for _, m := range tc.more {
				// in walk order
				i := slices.IndexFunc(cs, func(c diff.Change) bool { return c.Path > m.Path })
				if i < 0 {
					i = len(cs)
				}
				cs = slices.Insert(cs, i, m)
			}
			got := list(t, podmanLayer{w: cs, lowers: []string{lower}})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// /etc whose mode the container changed stays, stubs or not.
	if err := os.Chmod(filepath.Join(upper, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	stubs[0].Info = st("etc")
	if got := list(t, podmanLayer{w: stubs, lowers: []string{lower}}); !slices.Equal(got, []string{"C /etc"}) {
		t.Errorf("chmod /etc: got %q", got)
	}
}

// TestPodmanConfig: what the compatible API shows and podman commit leaves
// out (HOSTNAME, HOME podman added, the numeric stop signal, empty
// entrypoint and labels) stays out of the config; the rest is kept.
func TestPodmanConfig(t *testing.T) {
	base := &store.Image{RawConfig: []byte(`{"config":{"Env":["PATH=/bin"],"StopSignal":"SIGQUIT"}}`)}
	raw := json.RawMessage(`{"Hostname":"abc123","Env":["container=podman","PATH=/bin","TERM=xterm","HOME=/root","HOSTNAME=abc123","MODE=x"],
		"Cmd":["sh"],"Entrypoint":[],"Labels":{},"StopSignal":"15","WorkingDir":"/w","User":"1000"}`)
	var cfg dockerspec.DockerOCIImageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	o := &sourcing.Opened{Changes: diff.Overlay{Upper: "/u", Lowers: []string{"/l"}}, Base: base, Config: &cfg}
	podmanOpened(o, &ContainerJSON{Config: raw})
	got, _ := json.Marshal(o.Config)
	want := `{"User":"1000","Env":["container=podman","PATH=/bin","TERM=xterm","MODE=x"],"Cmd":["sh"],"WorkingDir":"/w","StopSignal":"SIGQUIT"}`
	if string(got) != want {
		t.Errorf("config\n got %s\nwant %s", got, want)
	}
	if _, ok := o.Changes.(sourcing.Merger); !ok {
		t.Errorf("podman's overlay walker %T is no Merger: snap diff would not list podman diff's view", o.Changes)
	}
}

// TestPodmanSockets: CONTAINER_HOST alone when set, and then never a
// service of snap's; root's socket or the user's otherwise.
func TestPodmanSockets(t *testing.T) {
	if got := podmanSockets("unix:///x.sock"); !slices.Equal(got, []string{"unix:///x.sock"}) {
		t.Errorf("with a host: %q", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	want := "unix:///run/user/4242/podman/podman.sock"
	if os.Geteuid() == 0 {
		want = "unix:///run/podman/podman.sock"
	}
	if got := podmanSockets(""); !slices.Equal(got, []string{want}) {
		t.Errorf("default: %q, want %q", got, want)
	}
	dead := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	_, stop, err := podmanService(context.Background(), dead)
	if !errors.Is(err, ErrNoPodman) || !strings.Contains(err.Error(), "none.sock") || stop != nil {
		t.Errorf("a CONTAINER_HOST that does not answer: %v (stop %v)", err, stop != nil)
	}
	if _, _, err := podmanService(context.Background(), "tcp://h:1"); err == nil || !strings.Contains(err.Error(), "unix://") {
		t.Errorf("tcp host: %v", err)
	}
}
