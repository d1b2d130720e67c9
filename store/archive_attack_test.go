package store

// Attacks on the store's GC lease, archive loading and image lookup (issue
// 8, items 2, 3, 7, 12) that succeeded against f854478 and are fixed since,
// kept as regression tests. Attacks the code withstood from the start are in
// archive_holds_test.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	goarchive "github.com/moby/go-archive/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/archivetest"
)

func rvIndex(t *testing.T, s *Store) string {
	t.Helper()
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// errReadTooFar ends a stream a test gives: reaching it means the loader
// read far beyond where docker load stops.
var errReadTooFar = errors.New("the loader read 64 MiB of a stream that is no tar")

// cappedStream yields next's bytes until 64 MiB, then errReadTooFar. It is
// no *os.File, as a pipe is not: LoadArchive spools it.
type cappedStream struct {
	n    int64
	fill func([]byte)
}

func (c *cappedStream) Read(p []byte) (int, error) {
	if c.n >= 64<<20 {
		return 0, errReadTooFar
	}
	p = p[:min(int64(len(p)), 64<<20-c.n)]
	c.fill(p)
	c.n += int64(len(p))
	return len(p), nil
}

// Regression: a stream that is no tar at all is spooled whole before anything
// looks at it. docker load reads a tar header first and stops at the first
// bad one, or at the end-of-archive blocks: `snap load -i /dev/zero` runs
// until a signal (docker: "empty archive" at once), and `snap load <
// /dev/urandom` (or any big non-tar file piped in, or compressed) writes
// until the disk is full. Every byte of random data goes to the spool file.
func TestLoadNonTarStreamFailsFast(t *testing.T) {
	for _, tc := range []struct {
		name string
		fill func([]byte)
	}{
		{"zeros, as /dev/zero", func(p []byte) { clear(p) }},
		{"random bytes, as /dev/urandom", func() func([]byte) {
			r := rand.New(rand.NewChaCha8([32]byte{1}))
			return func(p []byte) {
				for i := range p {
					p[i] = byte(r.Uint32()) | 1 // never a zero run, never a magic
				}
			}
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			in := &cappedStream{fill: tc.fill}
			wrote := archivetest.WriteChars(t)
			_, err = s.LoadArchive(t.Context(), in, compression.Gzip)
			wrote = archivetest.WriteChars(t) - wrote
			t.Logf("err %v; read %d bytes, wrote %d", err, in.n, wrote)
			if err == nil {
				t.Fatal("a stream that is no tar loaded")
			}
			if errors.Is(err, errReadTooFar) || in.n > 1<<20 {
				t.Errorf("read %d bytes of a stream whose first 512 bytes are no tar header", in.n)
			}
			if wrote > 1<<20 {
				t.Errorf("wrote %d bytes for a stream that is no tar", wrote)
			}
		})
	}
}

// Regression: "an entry that is not a layer costs nothing however large it
// claims to be" holds only for a plain archive in a regular file. A
// compressed archive (item 12) is decompressed whole into the spool file,
// so an unreferenced entry costs its full size in disk writes: 80 MiB of
// 'A' here gzips to ~80 KiB; bzip2 packs 1000 MiB of it into 753 bytes, so
// a ~80 KiB archive.tar.bz2 writes 100 GiB (zeros would become holes,
// anything else is written). Item 7's "extract only the blobs that
// manifests reference" is not met for compressed input.
func TestCompressedArchiveWritesOnlyReferenced(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	junk := bytes.Repeat([]byte{'A'}, 80<<20)
	entries := append([]archivetest.Entry{{Name: "junk", Body: junk}}, archivetest.Docker{Tag: "big:1"}.Entries(layer)...)
	gz := archivetest.Gzip(t, archivetest.Tar(t, nil, entries...))
	f := filepath.Join(t.TempDir(), "a.tar.gz")
	if err := os.WriteFile(f, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wrote := archivetest.WriteChars(t)
	if _, err := s.LoadArchive(t.Context(), in, compression.Gzip); err != nil {
		t.Fatal(err)
	}
	wrote = archivetest.WriteChars(t) - wrote
	t.Logf("a %d-byte archive.tar.gz wrote %d bytes", len(gz), wrote)
	if wrote > 8<<20 {
		t.Errorf("loading a %d-byte compressed archive with an unreferenced %d MiB entry wrote %d bytes", len(gz), len(junk)>>20, wrote)
	}
	if _, err := s.Lookup("big:1"); err != nil {
		t.Fatal(err)
	}
}

// Regression: an OCI archive's layer descriptor is stored with the mediaType the
// archive claims, whatever the blob is. snap reads layers by sniffing, so it
// copes, but the store is an OCI layout that skopeo and umoci "read as it
// is" (DESIGN): they decompress by mediaType, and `snap save --format
// oci-archive` passes the lie on. A blob's mediaType must say what it is
// (set from the detected compression, as AddLayer does), or load refuses.
func TestOCILayerMediaTypeIsItsContent(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	for _, tc := range []struct {
		name, claimed string
		blob          []byte
	}{
		{"gzip blob said to be a plain tar", ocispec.MediaTypeImageLayer, archivetest.Gzip(t, layer)},
		{"zstd blob said to be gzip", ocispec.MediaTypeImageLayerGzip, archivetest.Zstd(t, layer)},
		{"plain tar said to be zstd", ocispec.MediaTypeImageLayerZstd, layer},
		{"gzip blob said to be a config", ocispec.MediaTypeImageConfig, archivetest.Gzip(t, layer)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			before := rvIndex(t, s)
			imgs, err := s.LoadArchive(t.Context(), bytes.NewReader(archivetest.Tar(t, nil, archivetest.OCI{Ref: "lie:1", Blob: tc.blob, MediaType: tc.claimed}.Entries(t, layer)...)), compression.Gzip)
			if err != nil {
				if after := rvIndex(t, s); after != before {
					t.Errorf("refused (%v), but the index changed", err)
				}
				return // refusing is a fix too
			}
			want := map[goarchive.Compression]string{
				goarchive.None: ocispec.MediaTypeImageLayer,
				goarchive.Gzip: ocispec.MediaTypeImageLayerGzip,
				goarchive.Zstd: ocispec.MediaTypeImageLayerZstd,
			}[goarchive.Detect(tc.blob)]
			if got := imgs[0].Manifest.Layers[0].MediaType; got != want {
				t.Errorf("stored layer %s is described as %s, its content is %s", imgs[0].Manifest.Layers[0].Digest, got, want)
			}
		})
	}
}

// Regression: the image ID is the config's digest, but the index may hold two
// manifests with one config: load the same archive twice with another
// --compression (or commit the same tree twice with --source-date-epoch
// and another compression) and the tag moves to the new manifest while the
// old stays untagged, with the same ID. Lookup by that ID (in full, or any
// prefix) is then "ambiguous", so `snap inspect/rmi/run ID` fail; worse, a
// container records its image by ID (Meta.Image) and looks it up so on
// every start, mount and commit (container.Manager.Mount, Lowers): a
// container of such an image can no longer start or be committed. docker
// has one image per ID.
func TestLookupByIDWithTwoManifests(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	archive := archivetest.Tar(t, nil, archivetest.Docker{Tag: "twice:1"}.Entries(layerTar(t, "etc/motd", "hi\n"))...)
	first, err := s.LoadArchive(t.Context(), bytes.NewReader(archive), compression.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.LoadArchive(t.Context(), bytes.NewReader(archive), compression.None)
	if err != nil {
		t.Fatal(err)
	}
	id := first[0].ID
	if second[0].ID != id {
		t.Fatalf("the two loads gave IDs %s and %s", id, second[0].ID)
	}
	for _, name := range []string{id.String(), id.Encoded(), id.Encoded()[:12]} {
		if _, err := s.Lookup(name); err != nil {
			t.Errorf("Lookup(%s): %v", name, err)
		}
	}
}

// Regression: LoadArchive Puts its images one by one, and each Put rewrites
// (and fsyncs) the whole index.json, so an archive with n manifest.json
// entries costs O(n²) writes: 1000 entries of one shared config and layer,
// each with its own tag (a 71 KB archive), write 106 MB and take 3 s here;
// a 16 MiB manifest.json (~300k entries, ~200 KB gzipped) would take days.
// The loop does not look at ctx either, so Ctrl-C does not stop it (and
// cmd/snap swallows every signal after the first). One index update for the
// whole archive also makes a multi-image load all-or-nothing, which today
// it is not: a Put failing half way leaves the images before it indexed.
func TestLoadManyImagesWritesTheIndexOnce(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	const n = 400
	var ms []dockerManifest
	for i := range n {
		ms = append(ms, dockerManifest{Config: "c.json", RepoTags: []string{fmt.Sprintf("many:%d", i)}, Layers: []string{"l/layer.tar"}})
	}
	m, _ := json.Marshal(ms)
	archive := archivetest.Tar(t, nil, archivetest.Entry{Name: "c.json", Body: archivetest.Config(digest.FromBytes(layer))}, archivetest.Entry{Name: "l/layer.tar", Body: layer}, archivetest.Entry{Name: "manifest.json", Body: m})
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wrote := archivetest.WriteChars(t)
	if _, err := s.LoadArchive(t.Context(), bytes.NewReader(archive), compression.Gzip); err != nil {
		t.Fatal(err)
	}
	wrote = archivetest.WriteChars(t) - wrote
	index := len(rvIndex(t, s))
	t.Logf("a %d-byte archive of %d tags wrote %d bytes; the index is %d", len(archive), n, wrote, index)
	if wrote > int64(8*index+len(archive)) {
		t.Errorf("loading %d tags wrote %d bytes, %d times the final index (%d bytes): the index is rewritten per image", n, wrote, wrote/int64(index), index)
	}
}

// Regression: a docker-archive whose RepoTags name one tag twice (or as "x:1"
// and "docker.io/library/x:1", which ParseRef makes one) gets two index
// entries with that tag: Put drops each tag once, then appends one entry
// per tag. dropTag removes only the first entry holding a tag, so when the
// tag later moves (a commit, a load, snap tag) the old image keeps the
// other: the tag names two images, and Lookup returns the old one, the
// first in index order. `snap commit ... x:1` then reports the new image
// while `snap run x:1` runs the old.
func TestDuplicateRepoTagsStayOneTag(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layer := layerTar(t, "etc/motd", "old\n")
	m, _ := json.Marshal([]dockerManifest{{Config: "c.json", RepoTags: []string{"dup:1", "docker.io/library/dup:1"}, Layers: []string{"l/layer.tar"}}})
	if _, err := s.LoadArchive(t.Context(), bytes.NewReader(archivetest.Tar(t, nil,
		archivetest.Entry{Name: "c.json", Body: archivetest.Config(digest.FromBytes(layer))},
		archivetest.Entry{Name: "l/layer.tar", Body: layer},
		archivetest.Entry{Name: "manifest.json", Body: m})), compression.Gzip); err != nil {
		t.Fatal(err)
	}
	newer := putImage(t, s, "dup:1", "etc/motd", "new\n")
	got, err := s.Lookup("dup:1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != newer.ID {
		t.Errorf("dup:1 moved to %s, Lookup still gives %s", newer.ID, got.ID)
	}
	idx, _ := s.Index()
	n := 0
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == "dup:1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("dup:1 is on %d index entries", n)
	}
}

// Regression: copyLayer (the OCI path) finds a blob the store holds already and
// only hashes the archive's copy, never the store's, so a corrupt copy in
// the store stays: loading the image again does not repair it, as it does
// for a docker-archive (AddLayer renames a fresh blob over it) and for
// configs and manifests (PutBlob), and the loaded image is broken.
func TestOCILoadHealsCorruptLayer(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layer := layerTar(t, "etc/motd", "hi\n")
	archive := archivetest.Tar(t, nil, archivetest.OCI{Ref: "heal:1"}.Entries(t, layer)...)
	imgs, err := s.LoadArchive(t.Context(), bytes.NewReader(archive), compression.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	l := imgs[0].Manifest.Layers[0].Digest
	overwrite(t, s, l, "bit rot")
	if _, err := s.LoadArchive(t.Context(), bytes.NewReader(archive), compression.Gzip); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBlob(l); err != nil {
		t.Errorf("the layer after loading its image again: %v", err)
	}
}
