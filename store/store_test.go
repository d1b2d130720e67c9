package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseRef(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"golden", "golden:latest", ""},
		{"golden:3", "golden:3", ""},
		{"docker.io/library/busybox:1", "busybox:1", ""},
		{"registry.example.com:5000/team/app:v1.2", "registry.example.com:5000/team/app:v1.2", ""},
		{"Repo:Tag!", "", "Repo:Tag!"},
		{"UPPER", "", "UPPER"},
		{"a:b:c", "", "a:b:c"},
		{"x@sha256:" + strings.Repeat("a", 64), "", "digest"},
	}
	for _, tc := range tests {
		got, err := ParseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRef(%q) = %q, %v; want an error naming %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func config(n int) []byte {
	return []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["N=%d"]}}`, n))
}

// Concurrent commits into one store must all land: the index is updated
// under a lock, each update re-reading what the others wrote.
func TestConcurrentPutsAllLand(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Put(config(i), nil, []string{fmt.Sprintf("img:%d", i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 16 {
		t.Fatalf("%d images after 16 concurrent puts", len(imgs))
	}
}

func TestTagMoveRemovePrune(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Put(config(1), nil, []string{"app:1"})
	b, _ := s.Put(config(2), nil, []string{"app:1"}) // the tag moves
	if img, _ := s.Lookup("app:1"); img.ID != b.ID {
		t.Fatal("tag did not move to the newer image")
	}
	if _, err := s.Lookup(a.ID.Encoded()[:12]); err != nil {
		t.Fatalf("untagged image lost: %v", err)
	}
	if err := s.Tag("app:1", "app:stable"); err != nil {
		t.Fatal(err)
	}
	if img, _ := s.Lookup("app:stable"); img.ID != b.ID {
		t.Fatal("tag")
	}
	done, err := s.Remove("app:1")
	if err != nil || len(done) != 1 || done[0] != "Untagged: app:1" {
		t.Fatalf("remove tag: %v %v", done, err)
	}
	if _, err := s.Lookup("app:stable"); err != nil {
		t.Fatal("removing one tag removed the other")
	}
	done, err = s.Remove(a.ID.String())
	if err != nil || len(done) != 1 || !strings.HasPrefix(done[0], "Deleted: ") {
		t.Fatalf("remove by ID: %v %v", done, err)
	}
	rep, err := s.Prune(context.Background())
	if err != nil || rep.Freed == 0 {
		t.Fatalf("prune freed %d: %v", rep.Freed, err)
	}
	if _, err := os.Stat(blobPath(t, s, a.ID)); err == nil {
		t.Error("prune kept an unreachable config")
	}
	if _, err := s.Lookup("app:stable"); err != nil {
		t.Fatalf("prune broke a tagged image: %v", err)
	}
}

func TestCorruptBlobIsRefused(t *testing.T) {
	s, _ := Open(t.TempDir())
	img, _ := s.Put(config(1), nil, []string{"c:1"})
	if err := os.WriteFile(blobPath(t, s, img.ID), []byte(`{"os":"evil"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Lookup("c:1")
	if err == nil || !strings.Contains(err.Error(), img.ID.String()) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v, want one naming the corrupt blob", err)
	}
}

func TestAbortedBlobLeavesNothing(t *testing.T) {
	s, _ := Open(t.TempDir())
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half a layer"))
	w.Abort()
	ents, _ := os.ReadDir(filepath.Join(s.Root(), "blobs/sha256"))
	if len(ents) != 0 {
		t.Fatalf("blobs left: %v", ents)
	}
	idx, _ := s.Index()
	if len(idx.Manifests) != 0 {
		t.Fatal("index changed")
	}
	_ = ocispec.AnnotationRefName
}

func blobPath(t testing.TB, s *Store, d digest.Digest) string {
	t.Helper()
	p, err := s.BlobPath(d)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
