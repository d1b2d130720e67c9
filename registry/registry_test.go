package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/archivetest"
	"snap/store"
)

// newStore is an empty store in a temp dir.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// addImage stores an image of one layer per body on top of parent's layers
// (parent "" : none), each layer holding the file NAME with that body.
func addImage(t *testing.T, st *store.Store, tag, parent string, comp compression.Compression, bodies ...string) *store.Image {
	t.Helper()
	var layers []ocispec.Descriptor
	var cfg ocispec.Image
	cfg.OS, cfg.Architecture, cfg.RootFS.Type = "linux", "amd64", "layers"
	if parent != "" {
		p, err := st.Lookup(parent)
		if err != nil {
			t.Fatal(err)
		}
		layers, cfg.RootFS.DiffIDs = p.Manifest.Layers, p.Config.RootFS.DiffIDs
	}
	for i, b := range bodies {
		tarb := archivetest.Tar(t, nil, archivetest.Entry{Name: "f" + string(rune('a'+i)), Body: []byte(b)})
		d, diffID, err := st.AddLayer(context.Background(), bytes.NewReader(tarb), comp)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	}
	raw, _ := json.Marshal(cfg)
	img, err := st.Put(raw, layers, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// fakeRegistry is go-containerregistry's in-memory registry on loopback,
// with an optional middleware that lies; it counts blob uploads.
type fakeRegistry struct {
	*httptest.Server
	host    string
	uploads atomic.Int32
}

func newFakeRegistry(t *testing.T, lie func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) *fakeRegistry {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	f := &fakeRegistry{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch || (r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.ContentLength > 0) {
			f.uploads.Add(1)
		}
		if lie != nil && lie(w, r, reg) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	f.host = strings.TrimPrefix(f.URL, "http://")
	return f
}

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry(t, nil)
	src := newStore(t)
	img1 := addImage(t, src, "golden:1", "", compression.Gzip, "one", "two")
	img2 := addImage(t, src, "golden:2", "golden:1", compression.Gzip, "three")

	p, err := Push(ctx, src, "golden:1", reg.host+"/team/golden:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 2 {
		t.Errorf("first push sent %d layers, want 2", p.Sent)
	}
	again, err := Push(ctx, src, "golden:1", reg.host+"/team/golden:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Sent != 0 || again.Digest != p.Digest {
		t.Errorf("second push: sent %d, digest %s; want 0 and %s", again.Sent, again.Digest, p.Digest)
	}
	before := reg.uploads.Load()
	p2, err := Push(ctx, src, "golden:2", reg.host+"/team/golden:2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Sent != 1 {
		t.Errorf("golden:2 after golden:1 sent %d layers, want 1", p2.Sent)
	}
	// One small layer and the config: two uploads at the most.
	if n := reg.uploads.Load() - before; n > 2*2 {
		t.Errorf("golden:2 after golden:1: %d upload requests", n)
	}
	other, err := Push(ctx, src, "golden:2", reg.host+"/other/golden:2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	// go-containerregistry's registry shares blobs across repositories
	// (distribution's needs the mount: e2e tests it).
	if other.Sent != 0 {
		t.Errorf("push to another repository sent %d layers, want 0", other.Sent)
	}

	dst := newStore(t)
	got, err := Pull(ctx, dst, reg.host+"/team/golden:2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Image.ID != img2.ID || got.Digest != p2.Digest || got.Downloaded != 3 {
		t.Errorf("pull: ID %s digest %s downloaded %d; want %s %s 3", got.Image.ID, got.Digest, got.Downloaded, img2.ID, p2.Digest)
	}
	if got.Tag != reg.host+"/team/golden:2" {
		t.Errorf("pull tagged %q", got.Tag)
	}
	for i, l := range got.Image.Manifest.Layers {
		if l.Digest != img2.Manifest.Layers[i].Digest || l.Annotations[store.AnnotationContentSize] == "" {
			t.Errorf("layer %d: %+v, want the pushed blob with its sizes", i, l)
		}
	}
	// golden:1's layers are there: pulling it fetches nothing.
	g1, err := Pull(ctx, dst, reg.host+"/team/golden:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g1.Downloaded != 0 || g1.Image.ID != img1.ID {
		t.Errorf("golden:1 after golden:2: downloaded %d, ID %s", g1.Downloaded, g1.Image.ID)
	}
	// By digest: no tag.
	byDigest, err := Pull(ctx, newStore(t), reg.host+"/team/golden@"+p.Digest.String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.Tag != "" || len(byDigest.Image.Tags) != 0 || byDigest.Image.ID != img1.ID {
		t.Errorf("pull by digest: tag %q, tags %v, ID %s", byDigest.Tag, byDigest.Image.Tags, byDigest.Image.ID)
	}
}

// An uncompressed layer goes out gzip'd; the digest is remembered, so the
// next push (even after a prune took the compressed blob) sends the same
// bytes under the same digest.
func TestPushCompressesUncompressedLayers(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "plain:1", "", compression.None, strings.Repeat("compress me ", 1000))
	for _, c := range []compression.Compression{compression.Gzip, compression.Zstd} {
		t.Run(string(c), func(t *testing.T) {
			reg := newFakeRegistry(t, nil)
			p, err := Push(ctx, src, "plain:1", reg.host+"/x/plain:1", Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			desc, ok := src.Distribution().CompressedAs(img.Config.RootFS.DiffIDs[0], c)
			if !ok || desc.MediaType != c.MediaType() || desc.Size >= img.Manifest.Layers[0].Size {
				t.Fatalf("remembered %+v (%v), want a smaller %s blob", desc, ok, c)
			}
			// The compressed blob is gone (as after a prune); a push to a
			// fresh registry compresses again, to the same digest.
			path, _ := src.BlobPath(desc.Digest)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			reg2 := newFakeRegistry(t, nil)
			p2, err := Push(ctx, src, "plain:1", reg2.host+"/x/plain:1", Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			if p2.Digest != p.Digest || p2.Sent != 1 {
				t.Errorf("push after the blob went: %s sent %d, want %s sent 1", p2.Digest, p2.Sent, p.Digest)
			}
			got, err := Pull(ctx, newStore(t), reg2.host+"/x/plain:1", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Image.ID != img.ID || got.Image.Manifest.Layers[0].MediaType != c.MediaType() {
				t.Errorf("pulled %s with %s, want %s with %s", got.Image.ID, got.Image.Manifest.Layers[0].MediaType, img.ID, c.MediaType())
			}
		})
	}
}

// blobsIn lists the store's blob files.
func blobsIn(t *testing.T, st *store.Store) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(st.Root(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// A registry that lies is refused, and nothing of what it served is kept.
func TestPullRefusesALyingRegistry(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "real content")
	layer := img.Manifest.Layers[0].Digest
	cfgDigest := img.ID
	manifest := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		b, _ := json.Marshal(img.Manifest)
		json.Unmarshal(b, &m)
		edit(m)
		out, _ := json.Marshal(m)
		return out
	}
	serve := func(path string, body []byte, mediaType string) func(http.ResponseWriter, *http.Request, http.Handler) bool {
		return func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
			if !strings.HasSuffix(r.URL.Path, path) {
				return false
			}
			w.Header().Set("Content-Type", mediaType)
			w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			if r.Method != http.MethodHead {
				w.Write(body)
			}
			return true
		}
	}
	flipped := func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b[len(b)/2] ^= 0xff
		w.WriteHeader(rec.Code)
		w.Write(b)
		return true
	}
	tests := []struct {
		name string
		lie  func(http.ResponseWriter, *http.Request, http.Handler) bool
		want error
	}{
		{"layer bytes flipped", flipped, nil},
		{"config not its digest", serve("/blobs/"+cfgDigest.String(), []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), "application/octet-stream"), nil},
		{"more layers than diff_ids", serve("/manifests/1", manifest(func(m map[string]any) {
			m["layers"] = append(m["layers"].([]any), m["layers"].([]any)[0])
		}), ocispec.MediaTypeImageManifest), ErrMismatch},
		{"a digest that is a path", serve("/manifests/1", manifest(func(m map[string]any) {
			m["layers"].([]any)[0].(map[string]any)["digest"] = "sha256:../../../../etc/passwd"
		}), ocispec.MediaTypeImageManifest), nil},
		{"a foreign layer", serve("/manifests/1", manifest(func(m map[string]any) {
			m["layers"].([]any)[0].(map[string]any)["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
		}), ocispec.MediaTypeImageManifest), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t, tc.lie)
			if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
				t.Fatal(err)
			}
			dst := newStore(t)
			_, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{})
			if err == nil {
				t.Fatal("pulled what the registry lied about")
			}
			t.Log(err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			imgs, _ := dst.Images()
			if len(imgs) != 0 || len(blobsIn(t, dst)) != 0 {
				t.Errorf("after a refused pull the store holds %d images, blobs %v", len(imgs), blobsIn(t, dst))
			}
			if _, err := os.Stat("/etc/passwd.snap-test"); err == nil {
				t.Error("a path digest reached outside")
			}
		})
	}
}

// A diff_id that is not the layer's content: the layer is refused, with
// the config's claim in the error.
func TestPullRefusesWrongDiffID(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "content")
	var cfg map[string]any
	json.Unmarshal(img.RawConfig, &cfg)
	cfg["rootfs"].(map[string]any)["diff_ids"] = []string{"sha256:" + strings.Repeat("1", 64)}
	raw, _ := json.Marshal(cfg)
	if _, err := src.Put(raw, img.Manifest.Layers, []string{"liar:1"}); err != nil {
		t.Fatal(err)
	}
	reg := newFakeRegistry(t, nil)
	if _, err := Push(ctx, src, "liar:1", reg.host+"/x/liar:1", Options{}); err != nil {
		t.Fatal(err)
	}
	dst := newStore(t)
	if _, err := Pull(ctx, dst, reg.host+"/x/liar:1", Options{}); err == nil || !strings.Contains(err.Error(), "1111") {
		t.Fatalf("pull of a lying diff_id: %v", err)
	}
	if imgs, _ := dst.Images(); len(imgs) != 0 {
		t.Errorf("store holds %d images", len(imgs))
	}
}

func TestPullUnknown(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry(t, nil)
	src := newStore(t)
	addImage(t, src, "app:1", "", compression.Gzip, "x")
	if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{reg.host + "/x/app:2", reg.host + "/nope/app:1", reg.host + "/x/app@sha256:" + strings.Repeat("a", 64)} {
		dst := newStore(t)
		_, err := Pull(ctx, dst, ref, Options{})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("pull %s: %v, want ErrNotFound", ref, err)
		}
		if imgs, _ := dst.Images(); len(imgs) != 0 {
			t.Errorf("pull %s left %d images", ref, len(imgs))
		}
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, registry, repo, id string
	}{
		{"localhost:5000/team/app:1", "localhost:5000", "team/app", "1"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest"},
		{"busybox", "index.docker.io", "library/busybox", "latest"},
		{"docker.io/library/busybox:1.36", "index.docker.io", "library/busybox", "1.36"},
		{"quay.io/org/app@sha256:" + strings.Repeat("a", 64), "quay.io", "org/app", "sha256:" + strings.Repeat("a", 64)},
	}
	for _, tc := range tests {
		r, err := ParseReference(tc.in, Options{})
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if r.Context().RegistryStr() != tc.registry || r.Context().RepositoryStr() != tc.repo || r.Identifier() != tc.id {
			t.Errorf("%s: %s %s %s", tc.in, r.Context().RegistryStr(), r.Context().RepositoryStr(), r.Identifier())
		}
	}
	for _, bad := range []string{"", " app", "App:1", "app:", "a/../b", "app@sha256:123", "app:1@sha256:zz"} {
		if _, err := ParseReference(bad, Options{}); !errors.Is(err, ErrReference) {
			t.Errorf("%q: %v, want ErrReference", bad, err)
		}
	}
}

func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	for reg, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1:5000": true, "127.9.9.9": true, "[::1]:5000": true, "x.localhost": true,
		"10.0.0.1:5000": false, "192.168.1.2:5000": false, "registry.example.com": false, "localhost.example.com": false,
	} {
		if got := Loopback(reg); got != want {
			t.Errorf("Loopback(%s) = %v", reg, got)
		}
		tr, err := newTransport(reg, Options{CertsDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if want {
			continue
		}
		// No network is touched: the guard answers first.
		req, _ := http.NewRequest(http.MethodGet, "http://"+reg+"/v2/", nil)
		if _, err := tr.RoundTrip(req); !errors.Is(err, ErrInsecure) {
			t.Errorf("plain HTTP to %s: %v, want ErrInsecure", reg, err)
		}
		tr, _ = newTransport(reg, Options{Insecure: true})
		if g := tr.(*guard); !g.allowHTTP {
			t.Errorf("Insecure does not allow plain HTTP to %s", reg)
		}
	}
}

// certs.d is read as docker reads it; a FIFO planted as a CA never hangs
// the client, and a registry name never climbs out of the directory.
func TestCertsDir(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "reg.example:5000")
	os.MkdirAll(host, 0o755)
	if err := syscall.Mkfifo(filepath.Join(host, "ca.crt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newTransport("reg.example:5000", Options{CertsDir: dir}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO CA: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("not pem"), 0o644)
	if _, err := newTransport("..", Options{CertsDir: filepath.Join(dir, "sub")}); err == nil {
		t.Error("registry .. read certificates outside the certs dir")
	}
	os.Remove(filepath.Join(host, "ca.crt"))
	os.WriteFile(filepath.Join(host, "ca.crt"), []byte("not pem"), 0o644)
	if _, err := newTransport("reg.example:5000", Options{CertsDir: dir}); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("junk CA: %v", err)
	}
}

// Login checks the password before saving it; logout forgets it.
func TestLoginLogout(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	cfgDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	t.Setenv("HOME", t.TempDir())
	cfgFile := filepath.Join(cfgDir, "config.json")

	err := Login(ctx, host, "ops", "wrong", Options{})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), host) {
		t.Fatalf("wrong password: %v, want ErrUnauthorized naming %s", err, host)
	}
	if _, err := os.Stat(cfgFile); err == nil {
		t.Fatal("a refused login saved credentials")
	}
	if err := Login(ctx, host, "ops", "s3cret", Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil || !strings.Contains(string(b), host) {
		t.Fatalf("config after login: %s %v", b, err)
	}
	if had, err := Logout(host); err != nil || !had {
		t.Fatalf("logout: %v %v", had, err)
	}
	if b, _ := os.ReadFile(cfgFile); strings.Contains(string(b), host) {
		t.Errorf("config after logout still names %s: %s", host, b)
	}
	if had, err := Logout(host); err != nil || had {
		t.Errorf("second logout: %v %v", had, err)
	}
}

// An interrupted pull resumes: the layers that arrived are not fetched
// again. The registry holds the second layer back until the pull is
// cancelled, after the first one was stored.
func TestPullResumesAfterAnInterruption(t *testing.T) {
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "first layer", "second layer")
	first, second := img.Manifest.Layers[0].Digest, img.Manifest.Layers[1].Digest
	var hold atomic.Bool
	hold.Store(true)
	var gets sync.Map // digest -> *atomic.Int32
	count := func(d digest.Digest) int32 {
		n, _ := gets.LoadOrStore(d, new(atomic.Int32))
		return n.(*atomic.Int32).Load()
	}
	reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		for _, d := range []digest.Digest{first, second} {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				n, _ := gets.LoadOrStore(d, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				if d == second && hold.Load() {
					<-r.Context().Done() // held until the client gives up
					return true
				}
			}
		}
		return false
	})
	if _, err := Push(context.Background(), src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
		t.Fatal(err)
	}
	dst := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{})
		done <- err
	}()
	for !dst.HasBlob(first) {
		select {
		case err := <-done:
			t.Fatalf("the pull ended before it was interrupted: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pull: %v", err)
	}
	if imgs, _ := dst.Images(); len(imgs) != 0 {
		t.Fatalf("an interrupted pull stored %d images", len(imgs))
	}
	hold.Store(false)
	before := count(first)
	p, err := Pull(context.Background(), dst, reg.host+"/x/app:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(first) - before; n != 0 || p.Downloaded != 1 || p.Image.ID != img.ID {
		t.Errorf("the resumed pull fetched the stored layer %d times, downloaded %d layers (want 0 and 1), ID %s", n, p.Downloaded, p.Image.ID)
	}
}
