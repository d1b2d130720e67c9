package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/diff"
)

// entry is one entry of an archive a test writes.
type entry struct {
	name string
	body []byte
	typ  byte // tar.TypeReg when zero
	link string
}

func tarBytes(t *testing.T, prefix []byte, entries []entry) []byte {
	t.Helper()
	b := bytes.NewBuffer(append([]byte(nil), prefix...))
	tw := tar.NewWriter(b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
		switch h.Typeflag {
		case 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func imageConfig(diffIDs ...digest.Digest) []byte {
	b, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	return b
}

// dockerEntries is a docker-archive of one image with one layer, named as
// given in manifest.json.
func dockerEntries(layer []byte, configName, layerName string, diffID digest.Digest) []entry {
	m, _ := json.Marshal([]dockerManifest{{Config: configName, RepoTags: []string{"hostile:1"}, Layers: []string{layerName}}})
	return []entry{
		{name: "cfg.json", body: imageConfig(diffID)},
		{name: "l/layer.tar", body: layer},
		{name: "manifest.json", body: m},
	}
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// ociSpec is an OCI archive of one image with one gzip layer; the
// overrides replace what its manifest and config say.
type ociSpec struct {
	layerDigest  digest.Digest
	diffID       digest.Digest
	configDigest digest.Digest
	extra        []entry
}

func ociEntries(t *testing.T, layer []byte, o ociSpec) []entry {
	gz := gzipBytes(t, layer)
	ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz), Size: int64(len(gz))}
	diffID := digest.FromBytes(layer)
	if o.diffID != "" {
		diffID = o.diffID
	}
	cfg := imageConfig(diffID)
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	blobs := []entry{{name: "blobs/sha256/" + ld.Digest.Encoded(), body: gz}, {name: "blobs/sha256/" + cd.Digest.Encoded(), body: cfg}}
	if o.layerDigest != "" {
		ld.Digest = o.layerDigest
	}
	if o.configDigest != "" {
		cd.Digest = o.configDigest
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "hostile:1"}}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{md}})
	return append(append(blobs, o.extra...),
		entry{name: "blobs/sha256/" + md.Digest.Encoded(), body: m},
		entry{name: ocispec.ImageIndexFile, body: idx},
		entry{name: ocispec.ImageLayoutFile, body: []byte(`{"imageLayoutVersion":"1.0.0"}`)})
}

// sparseEntry is the tar (without its end blocks) of one PAX sparse entry
// "big" of size bytes that are all a hole: a few hundred bytes in the
// archive.
func sparseEntry(t *testing.T, size int64) []byte {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var b bytes.Buffer
	if _, err := diff.WriteLayer(t.Context(), &b, diff.Rootfs{Root: dir}, diff.Options{Sparse: true}); err != nil {
		t.Fatal(err)
	}
	if b.Len() > 10<<10 {
		t.Fatalf("the sparse entry takes %d bytes", b.Len())
	}
	return bytes.TrimRight(b.Bytes(), "\x00") // the end blocks; the entry's own data is empty
}

// writeChars is how many bytes this process has written with write(2) and
// the like, to disk or not.
func writeChars(t *testing.T) int64 {
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

// tempLeftovers lists what a command left in the store under a temp name.
func tempLeftovers(t *testing.T, root string) []string {
	var left []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// TestHostileArchivesRefused loads archives built to escape the store, lie
// about their content or fill the disk: each is refused with one line
// naming what is wrong, the index stays as it was, no temp file stays, and
// nothing is written beyond a little.
func TestHostileArchivesRefused(t *testing.T) {
	w := t.TempDir()
	root := filepath.Join(w, "store")
	layer := tinyRootfs(t, map[string]string{"etc/motd": "hi\n"})
	good := filepath.Join(w, "base.tar")
	os.WriteFile(good, layer, 0o644)
	if code := Run(t.Context(), []string{"snap", "--root", root, "import", good, "base:1"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("import failed")
	}
	diffID := digest.FromBytes(layer)
	gzDigest := digest.FromBytes(gzipBytes(t, layer))
	hex512 := strings.Repeat("ab", 64)
	pathDigest := digest.Digest("sha256:" + strings.Repeat("../", 24) + "etc/passwd")
	const huge = 100 << 30
	if p := filepath.Join(root, "blobs", "sha256", pathDigest.Encoded()); p != "/etc/passwd" {
		t.Fatalf("%s names %s: it must reach a file that exists, or its case proves nothing", pathDigest, p)
	}

	tests := []struct {
		name   string
		prefix []byte // raw tar bytes before the entries
		files  []entry
		want   string
	}{
		{name: "OCI layer digest that is a path", files: ociEntries(t, layer, ociSpec{layerDigest: pathDigest}), want: string(pathDigest)},
		{name: "OCI layer digest of another algorithm", files: ociEntries(t, layer, ociSpec{layerDigest: digest.Digest("sha512:" + hex512),
			extra: []entry{{name: "blobs/sha512/" + hex512, body: gzipBytes(t, layer)}}}), want: "sha512:" + hex512},
		{name: "OCI layer digest with a short hex", files: ociEntries(t, layer, ociSpec{layerDigest: "sha256:abc",
			extra: []entry{{name: "blobs/sha256/abc", body: gzipBytes(t, layer)}}}), want: "sha256:abc"},
		{name: "OCI config digest that is a path", files: ociEntries(t, layer, ociSpec{configDigest: "sha256:../../../../../../../../../etc/passwd"}), want: "sha256:../../../../../../../../../etc/passwd"},
		{name: "OCI layer whose diff_id is wrong", files: ociEntries(t, layer, ociSpec{diffID: digest.FromString("other")}), want: gzDigest.String()},
		{name: "docker layer name with ..", files: dockerEntries(layer, "cfg.json", "../../../../../../../../etc/passwd", diffID), want: "../../../../../../../../etc/passwd"},
		{name: "docker layer name .. inside", files: dockerEntries(layer, "cfg.json", "l/../../l/layer.tar", diffID), want: "l/../../l/layer.tar"},
		{name: "docker absolute layer name", files: dockerEntries(layer, "cfg.json", "/etc/passwd", diffID), want: "/etc/passwd"},
		{name: "docker config name with ..", files: dockerEntries(layer, "../../../../../../../../etc/passwd", "l/layer.tar", diffID), want: "../../../../../../../../etc/passwd"},
		{name: "docker layer whose diff_id is wrong", files: dockerEntries(layer, "cfg.json", "l/layer.tar", digest.FromString("other")), want: "l/layer.tar"},
		{name: "docker layer that is a symlink out", files: append(dockerEntries(layer, "cfg.json", "s/layer.tar", diffID),
			entry{name: "s/layer.tar", typ: tar.TypeSymlink, link: "../../../../../../../../etc/passwd"}), want: "s/layer.tar"},
		{name: "docker layer that is an absolute symlink", files: append(dockerEntries(layer, "cfg.json", "s/layer.tar", diffID),
			entry{name: "s/layer.tar", typ: tar.TypeSymlink, link: "/etc/passwd"}), want: "s/layer.tar"},
		{name: "docker layer that is a directory", files: append(dockerEntries(layer, "cfg.json", "d", diffID),
			entry{name: "d", typ: tar.TypeDir}), want: `"d"`},
		{name: "docker layer that is a device", files: append(dockerEntries(layer, "cfg.json", "dev", diffID),
			entry{name: "dev", typ: tar.TypeChar}), want: `"dev"`},
		{name: "docker config over 16 MiB", files: append(dockerEntries(layer, "big.json", "l/layer.tar", diffID),
			entry{name: "big.json", body: make([]byte, 17<<20)}), want: "big.json"},
		{name: "100 GiB sparse entry in a small archive", prefix: sparseEntry(t, huge), files: dockerEntries(layer, "cfg.json", "l/layer.tar", diffID), want: "big"},
		{name: "docker layer that is the sparse entry", prefix: sparseEntry(t, huge), files: dockerEntries(layer, "cfg.json", "big", diffID), want: "big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "hostile.tar")
			if err := os.WriteFile(archive, tarBytes(t, tc.prefix, tc.files), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, root)
			wrote := writeChars(t)
			var out, errb bytes.Buffer
			code := Run(t.Context(), []string{"snap", "--root", root, "load", "-i", archive}, &out, &errb)
			wrote = writeChars(t) - wrote
			msg := errb.String()
			t.Log(strings.TrimSpace(msg))
			if code != 1 {
				t.Errorf("exit %d, want 1; stdout %q stderr %q", code, out.String(), msg)
			}
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "snap: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q: want one line 'snap: ...' naming %q", msg, tc.want)
			}
			if after := snapshot(t, root); after != before {
				t.Errorf("index changed:\n%s\n->\n%s", before, after)
			}
			if left := tempLeftovers(t, root); len(left) > 0 {
				t.Errorf("temp files left in the store: %v", left)
			}
			if wrote > 64<<20 {
				t.Errorf("loading a %d-byte archive wrote %d bytes", len(tc.prefix)+len(tc.files), wrote)
			}
		})
	}
}

// TestArchivesLoad loads archives a hostile-archive check must not refuse:
// docker's old layout with shared layers as symlinks or hardlinks, an OCI
// archive round trip, and snap's own archives compressed the ways docker
// load takes them.
func TestArchivesLoad(t *testing.T) {
	w := t.TempDir()
	src := filepath.Join(w, "src")
	base := filepath.Join(w, "rootfs")
	layer := tinyRootfs(t, map[string]string{"etc/motd": "hi\n"})
	os.WriteFile(base, layer, 0o644)
	id := strings.TrimSpace(runOut(t, "--root", src, "import", base, "arch:1"))
	runOut(t, "--root", src, "save", "-o", filepath.Join(w, "docker.tar"), "arch:1")
	runOut(t, "--root", src, "save", "--format", "oci-archive", "-o", filepath.Join(w, "oci.tar"), "arch:1")
	plain, err := os.ReadFile(filepath.Join(w, "docker.tar"))
	if err != nil {
		t.Fatal(err)
	}
	var zst bytes.Buffer
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(plain)
	zw.Close()
	os.WriteFile(filepath.Join(w, "docker.tar.gz"), gzipBytes(t, plain), 0o644)
	os.WriteFile(filepath.Join(w, "docker.tar.zst"), zst.Bytes(), 0o644)
	for _, tool := range []string{"bzip2", "xz"} {
		out, err := exec.Command(tool, "-c", filepath.Join(w, "docker.tar")).Output()
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s: %v", tool, err)
			}
			t.Logf("skipping %s: %v", tool, err)
			continue
		}
		os.WriteFile(filepath.Join(w, "docker.tar."+tool), out, 0o644)
	}

	diffID := digest.FromBytes(layer)
	cfg := imageConfig(diffID)
	linked := func(typ byte, link string) []entry {
		m, _ := json.Marshal([]dockerManifest{
			{Config: "a.json", RepoTags: []string{"arch:1"}, Layers: []string{"a/layer.tar"}},
			{Config: "b.json", RepoTags: []string{"arch:2"}, Layers: []string{"b/layer.tar"}},
		})
		return []entry{
			{name: "a/", typ: tar.TypeDir}, {name: "a/layer.tar", body: layer},
			{name: "b/", typ: tar.TypeDir}, {name: "b/layer.tar", typ: typ, link: link},
			{name: "a.json", body: cfg}, {name: "b.json", body: append(cfg[:len(cfg):len(cfg)], ' ')},
			{name: "manifest.json", body: m},
		}
	}
	os.WriteFile(filepath.Join(w, "symlinked.tar"), tarBytes(t, nil, linked(tar.TypeSymlink, "../a/layer.tar")), 0o644)
	os.WriteFile(filepath.Join(w, "hardlinked.tar"), tarBytes(t, nil, linked(tar.TypeLink, "a/layer.tar")), 0o644)

	files, _ := filepath.Glob(filepath.Join(w, "*.tar*"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "store")
			out := runOut(t, "--root", root, "load", "-i", f)
			if !strings.Contains(out, "Loaded image: arch:1") {
				t.Errorf("load said %q", out)
			}
			got := strings.TrimSpace(runOut(t, "--root", root, "inspect", "-f", "{{.Id}}", "arch:1"))
			if !strings.HasSuffix(f, "linked.tar") && got != id {
				t.Errorf("loaded as %s, want %s", got, id)
			}
			if strings.HasSuffix(f, "linked.tar") {
				runOut(t, "--root", root, "inspect", "arch:2")
			}
			if left := tempLeftovers(t, root); len(left) > 0 {
				t.Errorf("temp files left in the store: %v", left)
			}
		})
	}
	if len(files) < 6 {
		t.Errorf("only %d archives: %v", len(files), files)
	}
}
