package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"snap/commit"
	"snap/compression"
	"snap/internal/fixtures"
	"snap/sourcing"
	"snap/store"
)

// deepStore makes a store holding the busybox base (depth:1) and images of
// it under more layers (depth:N, one small file each), cheaply, through
// the store's API.
func deepStore(b *testing.B, root string, depths ...int) {
	b.Helper()
	st, err := store.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	base := filepath.Join(b.TempDir(), "base")
	if err := fixtures.Base(base); err != nil {
		b.Fatal(err)
	}
	img, err := commit.Commit(context.Background(), st, sourcing.Dir{Root: base}, commit.Options{Tag: "depth:1"})
	if err != nil {
		b.Fatal(err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.RawConfig, &cfg); err != nil {
		b.Fatal(err)
	}
	layers := slices.Clone(img.Manifest.Layers)
	for n := 2; n <= slices.Max(depths); n++ {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		body := fmt.Sprint(n)
		tw.WriteHeader(&tar.Header{Name: "depth/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1e9, 0)})
		tw.WriteHeader(&tar.Header{Name: "depth/" + body, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)})
		tw.Write([]byte(body))
		tw.Close()
		d, diffID, err := st.AddLayer(context.Background(), &buf, compression.None)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		if slices.Contains(depths, n) {
			raw, _ := json.Marshal(cfg)
			if _, err := st.Put(raw, layers, []string{fmt.Sprintf("depth:%d", n)}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRunDepth500 times a container's start and end, `snap run --rm
// IMG true`, on an image of 500 layers (overlayfs' whole stack with the
// container's init layer) against the 1-layer base, and on one of 600
// (its bottom 256 layers in a flattened lower, made in the untimed
// warm-up round and cached). Issue 9 wants depth 500 within 2x of depth 1.
func BenchmarkRunDepth500(b *testing.B) {
	if _, err := os.Stat(snapBin); err != nil {
		b.Fatalf("%s: %v (make build first; make bench does)", snapBin, err)
	}
	root := filepath.Join(b.TempDir(), "store")
	deepStore(b, root, 500, 600)
	run := func(img string) string {
		return fmt.Sprintf("%s --root %s run --rm %s true", snapBin, root, img)
	}
	for b.Loop() {
		med := race(b, []tool{
			{name: "run depth 1", cmd: run("depth:1")},
			{name: "run depth 500", cmd: run("depth:500")},
			{name: "run depth 600", cmd: run("depth:600")},
		})
		report(b, med, "run depth 500", "run depth 1", 2)
		report(b, med, "run depth 600", "run depth 1", 2)
	}
}
