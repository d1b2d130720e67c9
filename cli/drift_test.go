package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/archivetest"
	"snap/store"
)

// driftImage stores an image of one-entry-per-file layers under tag: each
// layer is a list of "NAME=CONTENT" files, "NAME/" directories and
// ".wh.NAME" whiteouts, all with one mtime.
func driftImage(t *testing.T, st *store.Store, tag string, layers ...[]string) {
	t.Helper()
	var descs []ocispec.Descriptor
	var ids []digest.Digest
	for _, l := range layers {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, f := range l {
			name, body, _ := strings.Cut(f, "=")
			h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}
			if strings.HasSuffix(name, "/") {
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(body))
		}
		tw.Close()
		d, id, err := st.AddLayer(t.Context(), &b, compression.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		descs, ids = append(descs, d), append(ids, id)
	}
	if _, err := st.Put(archivetest.Config(ids...), descs, []string{tag}); err != nil {
		t.Fatal(err)
	}
}

// snap diff IMAGE IMAGE prints docker diff's lines with the regular files'
// sizes, or a JSON array with --format json; an unknown image is one line
// naming it.
func TestDiffImages(t *testing.T) {
	root := t.TempDir()
	t.Setenv("SNAP_ROOT", root)
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"etc/", "etc/motd=hello motd\n", "etc/issue=Debian", "x=gone"}
	driftImage(t, st, "golden:1", base)
	// An edit of the same size in the same second: only the content tells.
	driftImage(t, st, "golden:2", base, []string{"etc/motd=hello motd!\n", "etc/issue=Ubuntu", ".wh.x", "opt/app/run=#!/bin/sh\nrun"})

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", "golden:1", "golden:2"}, "C /etc/issue  (6 B)\nC /etc/motd  (12 B, was 11 B)\nA /opt\nA /opt/app\nA /opt/app/run  (13 B)\nD /x  (4 B)\n"},
		{[]string{"diff", "golden:2", "golden:1"}, "C /etc/issue  (6 B)\nC /etc/motd  (11 B, was 12 B)\nD /opt\nA /x  (4 B)\n"},
		{[]string{"diff", "golden:1", "golden:1"}, ""},
		{[]string{"diff", "golden:1", "golden:2", "--format", "json"}, `[{"Kind":"C","Path":"/etc/issue","Type":"file","Size":6,"OldSize":6},` +
			`{"Kind":"C","Path":"/etc/motd","Type":"file","Size":12,"OldSize":11},` +
			`{"Kind":"A","Path":"/opt","Type":"dir"},{"Kind":"A","Path":"/opt/app","Type":"dir"},` +
			`{"Kind":"A","Path":"/opt/app/run","Type":"file","Size":13},{"Kind":"D","Path":"/x","Type":"file","OldSize":4}]` + "\n"},
		{[]string{"diff", "--format", "json", "golden:1", "golden:1"}, "[]\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if got := runOut(t, tc.args...); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"diff", "golden:1", "nope:1"}, 1, "nope:1"},
		{[]string{"diff", "nope:2", "golden:1"}, 1, "nope:2"},
		{[]string{"diff", "golden:1", "golden:2", "--format", "yaml"}, 2, `"yaml"`},
		{[]string{"diff", "golden:1", "golden:2", "golden:1"}, 2, "two IMAGEs"},
		{[]string{"diff", "golden:1", "golden:2", "--upper", root}, 2, "--upper"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr := runCode(t, tc.code, tc.args...)
			if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "snap: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stdout %q, stderr %q: want one line 'snap: ...%s...'", stdout, stderr, tc.want)
			}
		})
	}
}

// --format json works for a container's changes too: Kind, Path, and the
// Type and Size of what is there.
func TestDiffUpperJSON(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	u := t.TempDir()
	if err := os.MkdirAll(filepath.Join(u, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u, "etc", "motd"), []byte("hi <you>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/motd", filepath.Join(u, "l")); err != nil {
		t.Fatal(err)
	}
	args := []string{"diff", "--upper", u, "--upper-format", "aufs", "--format", "json"}
	requireRootFor(t, args...)
	want := `[{"Kind":"A","Path":"/etc","Type":"dir"},{"Kind":"A","Path":"/etc/motd","Type":"file","Size":9},{"Kind":"A","Path":"/l","Type":"symlink"}]` + "\n"
	if got := runOut(t, args...); got != want {
		t.Errorf("got %s want %s", got, want)
	}
}
