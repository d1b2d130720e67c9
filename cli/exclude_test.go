package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/go-archive/compression"

	"snap/store"
)

// TestCommitExclude: `snap commit --exclude` (repeatable) on a dir://
// container leaves the covered paths out of the layer (a new file, the
// deletion of a base file, a directory's content) and `snap diff
// --exclude` does not list them; a bad pattern is one line naming it,
// exit 1, and nothing made.
func TestCommitExclude(t *testing.T) {
	root := t.TempDir()
	t.Setenv("SNAP_ROOT", root)
	rootfs := t.TempDir()
	put := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(rootfs, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("etc/ssh/ssh_host_ed25519_key", "BASE-KEY")
	put("etc/ssh/sshd_config", "cfg")
	requireRootFor(t, "commit", "dir://"+rootfs, "base:1")
	runOut(t, "commit", "dir://"+rootfs, "base:1")
	put("root/.bash_history", "SECRET")
	put("root/app", "kept")
	put("var/cache/junk/x", "junk")
	if err := os.Remove(filepath.Join(rootfs, "etc/ssh/ssh_host_ed25519_key")); err != nil {
		t.Fatal(err)
	}
	excl := []string{"--exclude", "/root/.bash_history", "--exclude=/etc/ssh/ssh_host_*", "--exclude", "/var/cache/junk/**"}
	src := "dir://" + rootfs

	all := runOut(t, "diff", "--base", "base:1", src)
	for _, want := range []string{"A /root/.bash_history", "D /etc/ssh/ssh_host_ed25519_key", "A /var/cache/junk/x"} {
		if !strings.Contains(all, want+"\n") {
			t.Fatalf("snap diff without --exclude lacks %q:\n%s", want, all)
		}
	}
	filtered := runOut(t, append([]string{"diff", "--base", "base:1", src}, excl...)...)
	if strings.Contains(filtered, "bash_history") || strings.Contains(filtered, "ssh_host") || strings.Contains(filtered, "junk/") || !strings.Contains(filtered, "A /root/app\n") {
		t.Errorf("snap diff --exclude lists:\n%s", filtered)
	}

	id := strings.TrimSpace(runOut(t, append([]string{"commit", "--base", "base:1", src, "x:1"}, excl...)...))
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup("x:1")
	if err != nil || img.ID.String() != id {
		t.Fatalf("x:1: %v (%v), printed %s", img, err, id)
	}
	tarball, err := st.ReadBlob(img.Manifest.Layers[len(img.Manifest.Layers)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	listing := runOut(t, "layer", "--rootfs", rootfs, "--lower", mustLayerDir(t, st, "base:1"))
	if !strings.Contains(listing, "bash_history") {
		t.Fatalf("the unfiltered layer lacks the secret: the test proves nothing")
	}
	gz := bytes.NewReader(tarball)
	names := tarNames(t, gz)
	for _, n := range names {
		if strings.Contains(n, "bash_history") || strings.Contains(n, ".wh.") || strings.Contains(n, "junk/x") {
			t.Errorf("committed layer holds %s", n)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "root/app") {
		t.Errorf("committed layer lacks root/app: %q", names)
	}

	for _, bad := range []string{"root/.bash_history", "!/etc/keep", "/a/../b", "/var/[log"} {
		before, _ := st.Index()
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), []string{"snap", "commit", "--exclude", "/ok/**", "--exclude", bad, src, "x:2"}, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "snap: ") || !strings.Contains(lines[0], bad) || stdout.Len() != 0 {
			t.Errorf("--exclude %q: exit %d, stderr %q, stdout %q", bad, code, stderr.String(), stdout.String())
		}
		after, _ := st.Index()
		if len(after.Manifests) != len(before.Manifests) {
			t.Errorf("--exclude %q: the index went from %d to %d entries", bad, len(before.Manifests), len(after.Manifests))
		}
		code = Run(context.Background(), []string{"snap", "diff", "--exclude", bad, "--base", "base:1", src}, &stdout, &stderr)
		if code != 1 {
			t.Errorf("diff --exclude %q: exit %d", bad, code)
		}
	}
}

func mustLayerDir(t *testing.T, st *store.Store, name string) string {
	t.Helper()
	img, err := st.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := st.LayerDirs(img)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("layer dirs %v: %v", dirs, err)
	}
	return dirs[0]
}

// tarNames lists the entries of a (compressed) layer.
func tarNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	dec, err := compression.DecompressStream(r)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var out []string
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}
