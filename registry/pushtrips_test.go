package registry

import (
	"context"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"

	"snap/compression"
)

// TestPushAsksAboutEachBlobOnce pushes golden:2 after golden:1 (one small
// layer on top) and counts what the registry was asked: the push is that
// layer and the config going up, and each blob is asked about (HEAD) at
// most once. Round trips are the time of such a push on a near registry.
func TestPushAsksAboutEachBlobOnce(t *testing.T) {
	ctx := context.Background()
	var (
		mu    sync.Mutex
		heads = map[string]int{}
		count bool
	)
	reg := newFakeRegistry(t, func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		mu.Lock()
		defer mu.Unlock()
		if count && r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			heads[path.Base(r.URL.Path)]++
		}
		return false
	})
	st := newStore(t)
	addImage(t, st, "golden:1", "", compression.Gzip, "one", "two")
	img2 := addImage(t, st, "golden:2", "golden:1", compression.Gzip, "three")
	if _, err := Push(ctx, st, "golden:1", reg.host+"/team/golden:1", Options{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	count = true
	mu.Unlock()
	before := reg.uploads.Load()
	p, err := Push(ctx, st, "golden:2", reg.host+"/team/golden:2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 1 {
		t.Errorf("golden:2 after golden:1 sent %d layers, want 1", p.Sent)
	}
	if n := reg.uploads.Load() - before; n > 2*2 {
		t.Errorf("golden:2 after golden:1: %d upload requests, want the layer's and the config's", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range img2.Manifest.Layers {
		if heads[l.Digest.String()] != 1 {
			t.Errorf("layer %s: asked about %d times, want once", l.Digest, heads[l.Digest.String()])
		}
	}
	if n := heads[img2.ID.String()]; n > 1 {
		t.Errorf("config %s: asked about %d times, want at most once", img2.ID, n)
	}
}
