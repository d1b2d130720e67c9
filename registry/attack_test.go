package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/store"
)

// The tests here play a hostile registry (and a racing user) against snap.

// assertUntouched fails unless st holds no image, no blob and nothing in
// ingest: what a refused pull must leave.
func assertUntouched(t *testing.T, st *store.Store) {
	t.Helper()
	if imgs, _ := st.Images(); len(imgs) != 0 {
		t.Errorf("refused pull left %d images", len(imgs))
	}
	if b := blobsIn(t, st); len(b) != 0 {
		t.Errorf("refused pull left blobs %v", b)
	}
	if es, _ := os.ReadDir(filepath.Join(st.Root(), "ingest")); len(es) != 0 {
		t.Errorf("refused pull left %d files in ingest", len(es))
	}
}

// stream writes 1 MiB chunks until the client hangs up or max is reached,
// counting what it wrote.
func stream(w http.ResponseWriter, max int64, written *atomic.Int64) {
	chunk := []byte(strings.Repeat("x", 1<<20))
	for n := int64(0); n < max; n += int64(len(chunk)) {
		k, err := w.Write(chunk)
		written.Add(int64(k))
		if err != nil {
			return
		}
	}
}

// written bounds what the client may have read: the limit plus what the
// loopback socket buffers hold, well under go-containerregistry's own
// 100 MiB manifest limit.
const boundedRead = 40 << 20

// A registry serving a huge or endless manifest, index or config is
// refused after a bounded read, never read whole into memory.
func TestAttackHugeManifestAndConfig(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "small")
	huge := int64(200 << 20)
	hugeConfig := func(size int64) []byte {
		m := img.Manifest
		m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("huge"), Size: size}
		m.Annotations = nil
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		// manifest, if not nil, is served for the tag; body serves
		// paths ending in bodyPath with an endless (or huge) stream.
		manifest      []byte
		bodyPath      string
		contentLength bool
	}{
		{name: "manifest of 200 MiB", bodyPath: "/manifests/1", contentLength: true},
		{name: "endless chunked manifest", bodyPath: "/manifests/1"},
		{name: "config of 200 MiB", manifest: hugeConfig(huge), bodyPath: "/blobs/" + digest.FromString("huge").String(), contentLength: true},
		{name: "endless config of unknown size", manifest: hugeConfig(-1), bodyPath: "/blobs/" + digest.FromString("huge").String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var written atomic.Int64
			reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
				if r.Method != http.MethodGet && r.Method != http.MethodHead {
					return false
				}
				switch {
				case tc.manifest != nil && strings.HasSuffix(r.URL.Path, "/manifests/1"):
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", digest.FromBytes(tc.manifest).String())
					w.Header().Set("Content-Length", strconv.Itoa(len(tc.manifest)))
					w.Write(tc.manifest)
					return true
				case strings.HasSuffix(r.URL.Path, tc.bodyPath):
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", digest.FromString("huge").String())
					if tc.contentLength {
						w.Header().Set("Content-Length", strconv.FormatInt(huge, 10))
					}
					if r.Method == http.MethodGet {
						stream(w, huge, &written)
					}
					return true
				}
				return false
			})
			dst := newStore(t)
			_, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{})
			if err == nil {
				t.Fatal("pulled a 200 MiB document")
			}
			t.Log(err)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("error %v, want ErrTooLarge", err)
			}
			if n := written.Load(); n > boundedRead {
				t.Errorf("the client read %d MiB of it", n>>20)
			}
			assertUntouched(t, dst)
		})
	}
}

// A registry answering a digest with another manifest, directly or as an
// index's platform child, is refused.
func TestAttackManifestNotItsDigest(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	addImage(t, src, "a:1", "", compression.Gzip, "image a")
	addImage(t, src, "b:1", "", compression.Gzip, "image b")
	var swap atomic.Pointer[[2]string] // asked digest -> served digest
	reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		s := swap.Load()
		if s == nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/manifests/"+s[0]) {
			return false
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimSuffix(r.URL.Path, s[0]) + s[1]
		next.ServeHTTP(w, r2)
		return true
	})
	pa, err := Push(ctx, src, "a:1", reg.host+"/x/a:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Push(ctx, src, "b:1", reg.host+"/x/a:b", Options{})
	if err != nil {
		t.Fatal(err)
	}
	plat := hostPlatform()
	idx, _ := json.Marshal(ocispec.Index{
		Versioned: pushedVersion,
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: pa.Digest, Size: pa.Size,
			Platform: &ocispec.Platform{OS: plat.OS, Architecture: plat.Architecture, Variant: plat.Variant},
		}},
	})
	req, _ := http.NewRequest(http.MethodPut, reg.URL+"/v2/x/a/manifests/multi", strings.NewReader(string(idx)))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageIndex)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("putting the index: %v %v", resp, err)
	}
	// Honest first: the index and the digest pull work.
	if _, err := Pull(ctx, newStore(t), reg.host+"/x/a:multi", Options{}); err != nil {
		t.Fatal(err)
	}
	swap.Store(&[2]string{pa.Digest.String(), pb.Digest.String()})
	for _, ref := range []string{reg.host + "/x/a@" + pa.Digest.String(), reg.host + "/x/a:multi"} {
		dst := newStore(t)
		_, err := Pull(ctx, dst, ref, Options{})
		if err == nil {
			t.Errorf("pull %s: took b's manifest for a's digest", ref)
			continue
		}
		t.Log(err)
		if errors.Is(err, ErrNotFound) {
			t.Errorf("pull %s: %v: a child that is not its digest is no missing platform", ref, err)
		}
		assertUntouched(t, dst)
	}
}

var pushedVersion = func() (v struct {
	SchemaVersion int `json:"schemaVersion"`
}) {
	v.SchemaVersion = 2
	return
}()

// A layer blob whose size lies (in the manifest or in Content-Length), or
// that never ends, is refused after a bounded read and nothing is kept.
func TestAttackLayerSizeLies(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, strings.Repeat("layer ", 1000))
	layer := img.Manifest.Layers[0]
	blob, err := os.ReadFile(filepath.Join(src.Root(), "blobs", "sha256", layer.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	withSize := func(size int64) []byte {
		m := img.Manifest
		m.Layers = []ocispec.Descriptor{{MediaType: layer.MediaType, Digest: layer.Digest, Size: size}}
		m.Annotations = nil
		b, _ := json.Marshal(m)
		return b
	}
	endless := digest.FromString("endless")
	withEndless := func() []byte {
		m := img.Manifest
		m.Layers = []ocispec.Descriptor{{MediaType: layer.MediaType, Digest: endless, Size: 1024}}
		m.Annotations = nil
		b, _ := json.Marshal(m)
		return b
	}()
	tests := []struct {
		name     string
		manifest []byte
		blob     func(w http.ResponseWriter, written *atomic.Int64) bool // nil: the real blob
	}{
		{name: "manifest size larger", manifest: withSize(layer.Size + 100)},
		{name: "manifest size smaller", manifest: withSize(layer.Size - 100)},
		{name: "Content-Length larger", manifest: withSize(layer.Size), blob: func(w http.ResponseWriter, written *atomic.Int64) bool {
			w.Header().Set("Content-Length", strconv.FormatInt(layer.Size+100, 10))
			w.Write(blob)
			return true
		}},
		{name: "size 1 KiB, body endless", manifest: withEndless, blob: func(w http.ResponseWriter, written *atomic.Int64) bool {
			stream(w, 200<<20, written)
			return true
		}},
		{name: "size 1 KiB, Content-Length huge", manifest: withEndless, blob: func(w http.ResponseWriter, written *atomic.Int64) bool {
			w.Header().Set("Content-Length", strconv.Itoa(200<<20))
			stream(w, 200<<20, written)
			return true
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var written atomic.Int64
			var armed atomic.Bool // after the honest push
			reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
				if !armed.Load() || r.Method != http.MethodGet && r.Method != http.MethodHead {
					return false
				}
				switch {
				case strings.HasSuffix(r.URL.Path, "/manifests/1"):
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", digest.FromBytes(tc.manifest).String())
					w.Header().Set("Content-Length", strconv.Itoa(len(tc.manifest)))
					w.Write(tc.manifest)
					return true
				case tc.blob != nil && r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, "/blobs/"+layer.Digest.String()) || strings.HasSuffix(r.URL.Path, "/blobs/"+endless.String())):
					return tc.blob(w, &written)
				}
				return false
			})
			if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			dst := newStore(t)
			_, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{})
			if err == nil {
				t.Fatal("pulled a layer whose size lies")
			}
			t.Log(err)
			if n := written.Load(); n > boundedRead {
				t.Errorf("the client read %d MiB of a 1 KiB layer", n>>20)
			}
			assertUntouched(t, dst)
		})
	}
}

// A blob GET redirected to another host (as to S3) is followed; to a
// file:// URL or to plain HTTP on a host that is not loopback it is
// refused by the transport, whatever the registry itself is allowed.
func TestAttackRedirects(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "redirected")
	layer := img.Manifest.Layers[0].Digest
	blob, err := os.ReadFile(filepath.Join(src.Root(), "blobs", "sha256", layer.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }))
	defer s3.Close()
	tests := []struct {
		name, to string
		want     error // nil: the pull works
	}{
		{"to another loopback host", s3.URL + "/bucket/blob", nil},
		{"to file://", "file:///etc/passwd", nil},
		{"to plain HTTP not on loopback", "http://192.0.2.1:1/bucket/blob", ErrInsecure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
					return false
				}
				http.Redirect(w, r, tc.to, http.StatusTemporaryRedirect)
				return true
			})
			if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
				t.Fatal(err)
			}
			dst := newStore(t)
			// Only a guard that lets the request through would wait.
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			_, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{})
			if tc.name == "to another loopback host" {
				if err != nil {
					t.Fatalf("a redirect to another host: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("followed the redirect")
			}
			t.Log(err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			assertUntouched(t, dst)
		})
	}
	// A TLS registry's redirect to plain HTTP, even on loopback, is refused
	// (no network is touched: the guard answers first).
	tr, err := newTransport("registry.example.com", Options{CertsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, s3.URL+"/bucket/blob", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrInsecure) {
		t.Errorf("a TLS registry's request to %s: %v, want ErrInsecure", s3.URL, err)
	}
}

// What a hostile registry says in an error body or header never reaches
// the terminal as more than one short line of printable text.
func TestAttackErrorBodies(t *testing.T) {
	ctx := context.Background()
	ansi := "\x1b[2J\x1b[31mPWNED\x1b]0;title\x07\r\nsnap: fake second line\n"
	long := strings.Repeat("A", 100<<10)
	tests := []struct {
		name   string
		status int
		header [2]string
		body   string
	}{
		{"huge multi-line body", 500, [2]string{}, strings.Repeat(ansi+long, 10)},
		{"registry error with escapes", 400, [2]string{"Content-Type", "application/json"},
			`{"errors":[{"code":"DENIED\u009b31m` + strings.Repeat(`\u001b[31m\n`, 50) + `","message":"` + strings.Repeat(`\u001b[31mbad\r\n\u009b31m`, 5000) + `","detail":"` + long + `"}]}`},
		{"many registry errors", 400, [2]string{"Content-Type", "application/json"},
			`{"errors":[` + strings.Repeat(`{"code":"X","message":"m"},`, 5000) + `{"code":"X","message":"m"}]}`},
		{"WWW-Authenticate with escapes", 401, [2]string{"WWW-Authenticate", `Bearer realm="http://127.0.0.1:1/` + strings.Repeat("\x1b[31m", 200) + `",service="` + long[:4000] + `"`}, ""},
		{"WWW-Authenticate realm not a URL", 401, [2]string{"WWW-Authenticate", `Bearer realm="` + strings.Repeat("\x1b[31m", 200) + "%zz" + `"`}, ""},
		{"Content-Type with escapes", 200, [2]string{"Content-Type", strings.Repeat("\x1b[31m", 500)}, `{"schemaVersion":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
				if r.URL.Path == "/v2/" && tc.status != 401 {
					return false
				}
				if tc.header[0] != "" {
					w.Header()[tc.header[0]] = []string{tc.header[1]}
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
				return true
			})
			_, err := Pull(ctx, newStore(t), reg.host+"/x/app:1", Options{})
			if err == nil {
				t.Fatal("pulled from a registry that only says errors")
			}
			msg := err.Error()
			t.Logf("%.300q", msg)
			if strings.ContainsFunc(msg, unicode.IsControl) {
				t.Errorf("error holds control characters: %.300q", msg)
			}
			if len(msg) > 600 {
				t.Errorf("error is %d bytes long", len(msg))
			}
			if strings.Contains(msg, "PWNED") && strings.Contains(msg, "fake second line") {
				t.Errorf("error carries the raw body: %.300q", msg)
			}
		})
	}
}

// Two pulls of one image into one store at once both land, and leave one
// image and no temp files.
func TestAttackConcurrentPulls(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "one", "two", "three")
	reg := newFakeRegistry(t, nil)
	if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{}); err != nil {
		t.Fatal(err)
	}
	dst := newStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = Pull(ctx, dst, reg.host+"/x/app:1", Options{})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := dst.Lookup(reg.host + "/x/app:1")
	if err != nil || got.ID != img.ID {
		t.Fatalf("after concurrent pulls: %v %v", got, err)
	}
	if imgs, _ := dst.Images(); len(imgs) != 1 {
		t.Errorf("%d images after concurrent pulls of one", len(imgs))
	}
	if es, _ := os.ReadDir(filepath.Join(dst.Root(), "ingest")); len(es) != 0 {
		t.Errorf("%d files left in ingest", len(es))
	}
	rep, err := dst.Prune(ctx)
	if err != nil || rep.Freed != 0 {
		t.Errorf("prune after concurrent pulls freed %d: %v", rep.Freed, err)
	}
}

// A prune that runs while a pull is between layers waits for it: the
// layers the pull stored before its image exists survive.
func TestAttackPullRacingPrune(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "app:1", "", compression.Gzip, "first", "second")
	second := img.Manifest.Layers[1].Digest
	dst := newStore(t)
	pruned := make(chan error, 1)
	var once sync.Once
	reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+second.String()) {
			once.Do(func() {
				// The first layer is stored, no image reaches it: a prune
				// now must wait for the pull's lease.
				go func() {
					_, err := dst.Prune(ctx)
					pruned <- err
				}()
				time.Sleep(200 * time.Millisecond) // let the prune reach its lock; not asserted
			})
		}
		return false
	})
	if _, err := Push(ctx, src, "app:1", reg.host+"/x/app:1", Options{Jobs: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, dst, reg.host+"/x/app:1", Options{Jobs: 1}); err != nil {
		t.Fatal(err)
	}
	if err := <-pruned; err != nil {
		t.Fatal(err)
	}
	got, err := dst.Lookup(reg.host + "/x/app:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range got.Manifest.Layers {
		if !dst.HasBlob(l.Digest) {
			t.Errorf("layer %s pruned under the pull", l.Digest)
		}
	}
	if !dst.HasBlob(got.ManifestDesc.Digest) || !dst.HasBlob(got.ID) {
		t.Error("manifest or config pruned under the pull")
	}
}

// Two pushes of an image stored uncompressed, at once, to two registries:
// both compress, both remember, both send the same digest.
func TestAttackConcurrentPushesOfUncompressed(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	img := addImage(t, src, "plain:1", "", compression.None, strings.Repeat("compress me ", 5000), strings.Repeat("and me ", 5000))
	regs := []*fakeRegistry{newFakeRegistry(t, nil), newFakeRegistry(t, nil), newFakeRegistry(t, nil), newFakeRegistry(t, nil)}
	res := make([]*Pushed, len(regs))
	errs := make([]error, len(regs))
	var wg sync.WaitGroup
	for i, reg := range regs {
		wg.Go(func() {
			res[i], errs[i] = Push(ctx, src, "plain:1", reg.host+"/x/plain:1", Options{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if res[i].Digest != res[0].Digest {
			t.Errorf("push %d: digest %s, push 0: %s", i, res[i].Digest, res[0].Digest)
		}
	}
	d := src.Distribution()
	for _, diffID := range img.Config.RootFS.DiffIDs {
		desc, ok := d.CompressedAs(diffID, compression.Gzip)
		if !ok || !src.HasBlob(desc.Digest) {
			t.Errorf("layer %s: remembered %+v %v", diffID, desc, ok)
		}
		for _, reg := range regs {
			if !containsString(d.Repos[desc.Digest], reg.host+"/x/plain") {
				t.Errorf("blob %s: repos %v lack %s", desc.Digest, d.Repos[desc.Digest], reg.host)
			}
		}
	}
	if es, _ := os.ReadDir(filepath.Join(src.Root(), "ingest")); len(es) != 0 {
		t.Errorf("%d files left in ingest", len(es))
	}
	for i, reg := range regs {
		got, err := Pull(ctx, newStore(t), reg.host+"/x/plain:1", Options{})
		if err != nil || got.Image.ID != img.ID {
			t.Errorf("pull from registry %d: %v", i, err)
		}
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// A credential helper named with a path in docker's config never runs:
// only docker-credential-NAME on PATH does.
func TestAttackCredentialHelperPath(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry(t, nil)
	dir := t.TempDir()
	t.Chdir(dir)
	marker := filepath.Join(dir, "ran")
	if err := os.WriteFile(filepath.Join(dir, "evil"), []byte("#!/bin/sh\ntouch "+marker+"\necho '{}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// exec runs a name with a '/' relative to the working directory.
	if err := os.Mkdir(filepath.Join(dir, "docker-credential-x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, config string }{
		{"credHelpers", fmt.Sprintf(`{"credHelpers":{%q:"x/../evil"}}`, reg.host)},
		{"credsStore", `{"credsStore":"x/../evil"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgDir := t.TempDir()
			t.Setenv("DOCKER_CONFIG", cfgDir)
			if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			_, pullErr := Pull(ctx, newStore(t), reg.host+"/x/app:1", Options{})
			loginErr := Login(ctx, reg.host, "u", "p", Options{})
			_, logoutErr := Logout(reg.host)
			if _, err := os.Stat(marker); err == nil {
				os.Remove(marker)
				t.Fatal("snap ran a credential helper outside PATH")
			}
			for what, err := range map[string]error{"pull": pullErr, "login": loginErr, "logout": logoutErr} {
				if err == nil || !strings.Contains(err.Error(), "x/../evil") {
					t.Errorf("%s: %v, want an error naming the helper", what, err)
				}
			}
		})
	}
}
