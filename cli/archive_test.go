package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"snap/diff"
	"snap/internal/archivetest"
)

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
	gzDigest := digest.FromBytes(archivetest.Gzip(t, layer))
	hex512 := strings.Repeat("ab", 64)
	pathDigest := digest.Digest("sha256:" + strings.Repeat("../", 24) + "etc/passwd")
	const huge = 100 << 30
	if p := filepath.Join(root, "blobs", "sha256", pathDigest.Encoded()); p != "/etc/passwd" {
		t.Fatalf("%s names %s: it must reach a file that exists, or its case proves nothing", pathDigest, p)
	}

	tests := []struct {
		name   string
		prefix []byte // raw tar bytes before the entries
		files  []archivetest.Entry
		want   string
	}{
		{name: "OCI layer digest that is a path", files: archivetest.OCI{Ref: "hostile:1", LayerDigest: pathDigest}.Entries(t, layer), want: string(pathDigest)},
		{name: "OCI layer digest of another algorithm", files: archivetest.OCI{Ref: "hostile:1", LayerDigest: digest.Digest("sha512:" + hex512),
			Extra: []archivetest.Entry{{Name: "blobs/sha512/" + hex512, Body: archivetest.Gzip(t, layer)}}}.Entries(t, layer), want: "sha512:" + hex512},
		{name: "OCI layer digest with a short hex", files: archivetest.OCI{Ref: "hostile:1", LayerDigest: "sha256:abc",
			Extra: []archivetest.Entry{{Name: "blobs/sha256/abc", Body: archivetest.Gzip(t, layer)}}}.Entries(t, layer), want: "sha256:abc"},
		{name: "OCI config digest that is a path", files: archivetest.OCI{Ref: "hostile:1", ConfigDigest: "sha256:../../../../../../../../../etc/passwd"}.Entries(t, layer), want: "sha256:../../../../../../../../../etc/passwd"},
		{name: "OCI layer whose diff_id is wrong", files: archivetest.OCI{Ref: "hostile:1", DiffID: digest.FromString("other")}.Entries(t, layer), want: gzDigest.String()},
		{name: "docker layer name with ..", files: archivetest.Docker{Tag: "hostile:1", LayerName: "../../../../../../../../etc/passwd"}.Entries(layer), want: "../../../../../../../../etc/passwd"},
		{name: "docker layer name .. inside", files: archivetest.Docker{Tag: "hostile:1", LayerName: "l/../../l/layer.tar"}.Entries(layer), want: "l/../../l/layer.tar"},
		{name: "docker absolute layer name", files: archivetest.Docker{Tag: "hostile:1", LayerName: "/etc/passwd"}.Entries(layer), want: "/etc/passwd"},
		{name: "docker config name with ..", files: archivetest.Docker{Tag: "hostile:1", ConfigName: "../../../../../../../../etc/passwd"}.Entries(layer), want: "../../../../../../../../etc/passwd"},
		{name: "docker layer whose diff_id is wrong", files: archivetest.Docker{Tag: "hostile:1", DiffID: digest.FromString("other")}.Entries(layer), want: "l/layer.tar"},
		{name: "docker layer that is a symlink out", files: append(archivetest.Docker{Tag: "hostile:1", LayerName: "s/layer.tar"}.Entries(layer),
			archivetest.Entry{Name: "s/layer.tar", Typ: tar.TypeSymlink, Link: "../../../../../../../../etc/passwd"}), want: "s/layer.tar"},
		{name: "docker layer that is an absolute symlink", files: append(archivetest.Docker{Tag: "hostile:1", LayerName: "s/layer.tar"}.Entries(layer),
			archivetest.Entry{Name: "s/layer.tar", Typ: tar.TypeSymlink, Link: "/etc/passwd"}), want: "s/layer.tar"},
		{name: "docker layer that is a directory", files: append(archivetest.Docker{Tag: "hostile:1", LayerName: "d"}.Entries(layer),
			archivetest.Entry{Name: "d", Typ: tar.TypeDir}), want: `"d"`},
		{name: "docker layer that is a device", files: append(archivetest.Docker{Tag: "hostile:1", LayerName: "dev"}.Entries(layer),
			archivetest.Entry{Name: "dev", Typ: tar.TypeChar}), want: `"dev"`},
		{name: "docker config over 16 MiB", files: append(archivetest.Docker{Tag: "hostile:1", ConfigName: "big.json"}.Entries(layer),
			archivetest.Entry{Name: "big.json", Body: make([]byte, 17<<20)}), want: "big.json"},
		{name: "100 GiB sparse entry in a small archive", prefix: sparseEntry(t, huge), files: archivetest.Docker{Tag: "hostile:1", LayerName: "l/layer.tar"}.Entries(layer), want: "big"},
		{name: "docker layer that is the sparse entry", prefix: sparseEntry(t, huge), files: archivetest.Docker{Tag: "hostile:1", LayerName: "big"}.Entries(layer), want: "big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "hostile.tar")
			if err := os.WriteFile(archive, archivetest.Tar(t, tc.prefix, tc.files...), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, root)
			wrote := archivetest.WriteChars(t)
			var out, errb bytes.Buffer
			code := Run(t.Context(), []string{"snap", "--root", root, "load", "-i", archive}, &out, &errb)
			wrote = archivetest.WriteChars(t) - wrote
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
	os.WriteFile(filepath.Join(w, "docker.tar.gz"), archivetest.Gzip(t, plain), 0o644)
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
	cfg := archivetest.Config(diffID)
	linked := func(typ byte, link string) []archivetest.Entry {
		m, _ := json.Marshal([]archivetest.DockerManifest{
			{Config: "a.json", RepoTags: []string{"arch:1"}, Layers: []string{"a/layer.tar"}},
			{Config: "b.json", RepoTags: []string{"arch:2"}, Layers: []string{"b/layer.tar"}},
		})
		return []archivetest.Entry{
			{Name: "a/", Typ: tar.TypeDir}, {Name: "a/layer.tar", Body: layer},
			{Name: "b/", Typ: tar.TypeDir}, {Name: "b/layer.tar", Typ: typ, Link: link},
			{Name: "a.json", Body: cfg}, {Name: "b.json", Body: append(cfg[:len(cfg):len(cfg)], ' ')},
			{Name: "manifest.json", Body: m},
		}
	}
	os.WriteFile(filepath.Join(w, "symlinked.tar"), archivetest.Tar(t, nil, linked(tar.TypeSymlink, "../a/layer.tar")...), 0o644)
	os.WriteFile(filepath.Join(w, "hardlinked.tar"), archivetest.Tar(t, nil, linked(tar.TypeLink, "a/layer.tar")...), 0o644)

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
