// Package archivetest builds the docker-archives and OCI archives that the
// store's and the CLI's tests load: hostile ones as well as good ones, so
// nothing here checks what it is given.
package archivetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one entry of an archive a test writes.
type Entry struct {
	Name string
	Body []byte
	Typ  byte // tar.TypeReg when zero; tar.TypeXHeader writes Body as a PAX header
	Link string
}

// Tar is prefix (raw tar bytes, e.g. an entry without its end blocks)
// followed by the entries and the end blocks.
func Tar(t testing.TB, prefix []byte, entries ...Entry) []byte {
	t.Helper()
	b := bytes.NewBuffer(append([]byte(nil), prefix...))
	tw := tar.NewWriter(b)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Typ, Linkname: e.Link, Mode: 0o644}
		switch h.Typeflag {
		case 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Body))
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeXHeader:
			// tar.Writer writes no PAX header of this size: write it as a
			// file, then make its header a PAX one.
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.Typ == tar.TypeXHeader {
			tw.Flush()
			blk := b.Bytes()[b.Len()-512:]
			blk[156] = tar.TypeXHeader
			copy(blk[148:156], "        ")
			sum := 0
			for _, c := range blk {
				sum += int(c)
			}
			copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// PAXRecord is the body of a PAX extended header holding one record.
func PAXRecord(k, v string) []byte {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for len(strconv.Itoa(n+len(strconv.Itoa(n)))) != len(strconv.Itoa(n)) {
		n++
	}
	n += len(strconv.Itoa(n))
	return []byte(strconv.Itoa(n) + rec)
}

// Gzip compresses b, fast: tests gzip tens of MiB.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Zstd compresses b.
func Zstd(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, _ := zstd.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Config is an image config (linux/amd64) with these diff_ids.
func Config(diffIDs ...digest.Digest) []byte {
	b, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	return b
}

// DockerManifest is one entry of a docker-archive's manifest.json.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Docker describes a docker-archive of one image with one layer: its
// entries are the config "c.json", the layer "l/layer.tar" and
// manifest.json. The fields override what manifest.json and the config
// say; zero ones say the truth.
type Docker struct {
	Tag        string        // the one RepoTag; "" for none
	ConfigName string        // manifest.json's Config; "c.json"
	LayerName  string        // manifest.json's one layer; "l/layer.tar"
	DiffID     digest.Digest // the config's diff_id; the layer's digest
}

// Entries are the archive's entries for layer.
func (d Docker) Entries(layer []byte) []Entry {
	if d.ConfigName == "" {
		d.ConfigName = "c.json"
	}
	if d.LayerName == "" {
		d.LayerName = "l/layer.tar"
	}
	if d.DiffID == "" {
		d.DiffID = digest.FromBytes(layer)
	}
	dm := DockerManifest{Config: d.ConfigName, Layers: []string{d.LayerName}}
	if d.Tag != "" {
		dm.RepoTags = []string{d.Tag}
	}
	m, _ := json.Marshal([]DockerManifest{dm})
	return []Entry{
		{Name: "c.json", Body: Config(d.DiffID)},
		{Name: "l/layer.tar", Body: layer},
		{Name: "manifest.json", Body: m},
	}
}

// OCI describes an OCI archive of one image with one layer, tagged Ref by
// its index entry: entries for the layer blob, the config, Extra, the
// manifest, index.json and oci-layout, in that order. The digest fields
// override what the manifest and the config say; zero ones say the truth.
type OCI struct {
	Ref          string
	Blob         []byte // the layer's blob; nil: the layer gzipped
	MediaType    string // the layer descriptor's; "": gzip's
	LayerDigest  digest.Digest
	DiffID       digest.Digest
	ConfigDigest digest.Digest
	Extra        []Entry
}

// Entries are the archive's entries for layer.
func (o OCI) Entries(t testing.TB, layer []byte) []Entry {
	t.Helper()
	if o.Blob == nil {
		o.Blob = Gzip(t, layer)
	}
	if o.MediaType == "" {
		o.MediaType = ocispec.MediaTypeImageLayerGzip
	}
	if o.DiffID == "" {
		o.DiffID = digest.FromBytes(layer)
	}
	cfg := Config(o.DiffID)
	ld := ocispec.Descriptor{MediaType: o.MediaType, Digest: digest.FromBytes(o.Blob), Size: int64(len(o.Blob))}
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	es := []Entry{{Name: BlobEntry(ld.Digest), Body: o.Blob}, {Name: BlobEntry(cd.Digest), Body: cfg}}
	if o.LayerDigest != "" {
		ld.Digest = o.LayerDigest
	}
	if o.ConfigDigest != "" {
		cd.Digest = o.ConfigDigest
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m)),
		Annotations: map[string]string{ocispec.AnnotationRefName: o.Ref}}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{md}})
	return append(append(es, o.Extra...),
		Entry{Name: BlobEntry(md.Digest), Body: m},
		Entry{Name: ocispec.ImageIndexFile, Body: idx},
		Entry{Name: ocispec.ImageLayoutFile, Body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
}

// BlobEntry is the entry of a sha256 blob in an OCI layout.
func BlobEntry(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// WriteChars is how many bytes this process has written so far (write(2)
// and the like, to any file).
func WriteChars(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no wchar in /proc/self/io")
	return 0
}
