package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyRootfs writes a small rootfs tarball.
func tinyRootfs(t *testing.T, entries map[string]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

// snapshot is everything in the store but blobs that no index entry names:
// the index bytes, and the set of files.
func snapshot(t *testing.T, root string) string {
	idx, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(idx)
}

func TestBadInputLeavesStoreUnchanged(t *testing.T) {
	w := t.TempDir()
	root := filepath.Join(w, "store")
	good := filepath.Join(w, "base.tar")
	if err := os.WriteFile(good, tinyRootfs(t, map[string]string{"etc/motd": "hi\n"}), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Run(t.Context(), []string{"snap", "--root", root, "import", good, "base:1"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("import failed")
	}
	truncated := filepath.Join(w, "trunc.tar")
	full := tinyRootfs(t, map[string]string{"a": strings.Repeat("x", 5000)})
	os.WriteFile(truncated, full[:2000], 0o644)
	garbage := filepath.Join(w, "garbage.tar")
	os.WriteFile(garbage, []byte("this is not a tar archive at all, not even close......"), 0o644)
	rootfs := filepath.Join(w, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("changed\n"), 0o644)
	evil := filepath.Join(w, "evil.tar")
	{
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: 2, Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte("[]"))
		tw.WriteHeader(&tar.Header{Name: "../../escape", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		os.WriteFile(evil, b.Bytes(), 0o644)
	}

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"commit", "--base", "nope:1", "dir://" + rootfs, "x:1"}, "nope:1"},
		{[]string{"commit", "--base", "base:1", "dir://" + rootfs, "Repo:Tag!"}, "Repo:Tag!"},
		{[]string{"commit", "--base", "base:1", "dir:///does/not/exist", "x:1"}, "/does/not/exist"},
		{[]string{"commit", "--base", "base:1", "-c", "RUN rm -rf /", "dir://" + rootfs, "x:1"}, "RUN"},
		{[]string{"commit", "--base", "base:1", "-c", "HEALTHCHECK --interval=soon CMD true", "dir://" + rootfs, "x:2"}, "HEALTHCHECK"},
		{[]string{"commit", "--base", "base:1", "-c", "ENV", "dir://" + rootfs, "x:3"}, "ENV"},
		{[]string{"commit", "mycontainer", "x:1"}, "mycontainer"},
		{[]string{"history", "unknown:1"}, "unknown:1"},
		{[]string{"inspect", "unknown:1"}, "unknown:1"},
		{[]string{"rmi", "unknown:1"}, "unknown:1"},
		{[]string{"tag", "base:1", "Bad:Ref!"}, "Bad:Ref!"},
		{[]string{"import", truncated, "t:1"}, "import"},
		{[]string{"import", garbage, "g:1"}, "import"},
		{[]string{"import", filepath.Join(w, "missing.tar"), "m:1"}, "missing.tar"},
		{[]string{"load", "-i", truncated}, "load"},
		{[]string{"load", "-i", garbage}, "load"},
		{[]string{"load", "-i", evil}, "../../escape"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			requireRootFor(t, tc.args...)
			before := snapshot(t, root)
			var out, errb bytes.Buffer
			code := Run(t.Context(), append([]string{"snap", "--root", root}, tc.args...), &out, &errb)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
			}
			msg := errb.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "snap: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q: want one line 'snap: ...' naming %q", msg, tc.want)
			}
			if after := snapshot(t, root); after != before {
				t.Errorf("index changed:\n%s\n->\n%s", before, after)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(w, "escape")); err == nil {
		t.Error("an archive entry was written outside its target")
	}
}

func TestCorruptBlobIsNamed(t *testing.T) {
	w := t.TempDir()
	root := filepath.Join(w, "store")
	good := filepath.Join(w, "base.tar")
	os.WriteFile(good, tinyRootfs(t, map[string]string{"etc/motd": "hi\n"}), 0o644)
	if code := Run(t.Context(), []string{"snap", "--root", root, "import", "--compression", "none", good, "base:1"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("import failed")
	}
	blobs, _ := filepath.Glob(filepath.Join(root, "blobs/sha256/*"))
	var layer string
	for _, b := range blobs {
		if fi, _ := os.Stat(b); fi.Size() > 1500 {
			layer = b
		}
	}
	if layer == "" {
		t.Fatal("no layer blob")
	}
	f, _ := os.OpenFile(layer, os.O_WRONLY, 0)
	f.WriteAt([]byte("CORRUPT"), 600)
	f.Close()
	var out, errb bytes.Buffer
	code := Run(t.Context(), []string{"snap", "--root", root, "save", "-o", filepath.Join(w, "x.tar"), "base:1"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), filepath.Base(layer)) || !strings.Contains(errb.String(), "corrupt") {
		t.Fatalf("exit %d, stderr %q: want a one-line error naming the corrupt blob", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(w, "x.tar")); err == nil {
		t.Error("a half archive was left behind")
	}
}
