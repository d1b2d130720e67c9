package store

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snap/compression"
	"snap/internal/archivetest"
)

// FuzzLayerDirStaysInside unpacks hostile layers (names with .., absolute
// paths, symlinks and hardlinks pointing out, then entries written through
// them) and checks that nothing appears outside the layer directory.
// Each line of the input is "TYPE NAME [TARGET]", TYPE one of f d l h.
func FuzzLayerDirStaysInside(f *testing.F) {
	for _, s := range []string{
		"f ../escape",
		"f /abs/escape",
		"l out ../../outside\nf out/pwned",
		"l out /tmp\nf out/pwned",
		"h hl ../../outside/x",
		"d a\nl a/b ../../..\nf a/b/outside/pwned",
		"f .wh..wh..opq\nf .wh.x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		w := t.TempDir()
		outside := filepath.Join(w, "outside")
		os.Mkdir(outside, 0o755)
		s, err := Open(filepath.Join(w, "store"))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, line := range strings.Split(spec, "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			h := &tar.Header{Name: fields[1], Mode: 0o644}
			if len(fields) > 2 {
				h.Linkname = fields[2]
			}
			switch fields[0] {
			case "f":
				h.Typeflag, h.Size = tar.TypeReg, 1
			case "d":
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			case "l":
				h.Typeflag = tar.TypeSymlink
			case "h":
				h.Typeflag = tar.TypeLink
			default:
				continue
			}
			if tw.WriteHeader(h) != nil {
				return
			}
			if h.Size == 1 {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		desc, diffID, err := s.AddLayer(t.Context(), bytes.NewReader(b.Bytes()), compression.None)
		if err != nil {
			return
		}
		_, _ = s.LayerDir(desc, diffID) // may refuse; must never write outside
		ents, _ := os.ReadDir(outside)
		if len(ents) != 0 {
			t.Fatalf("layer wrote outside its directory: %v", ents)
		}
		top, _ := os.ReadDir(w)
		for _, e := range top {
			if e.Name() != "outside" && e.Name() != "store" {
				t.Fatalf("layer wrote %s next to the store", e.Name())
			}
		}
		if _, err := os.Lstat("/abs/escape"); err == nil {
			t.Fatal("layer wrote /abs/escape")
		}
	})
}

// FuzzLoadArchive feeds LoadArchive hostile archives, plain and gzipped,
// from a regular file and from a pipe: whatever the bytes, it must not
// panic, must write nothing outside the store, and an archive it refuses
// must leave the index as it was.
func FuzzLoadArchive(f *testing.F) {
	layer := archivetest.Tar(f, nil, archivetest.Entry{Name: "etc/motd", Body: []byte("hi\n")})
	docker := archivetest.Tar(f, nil, archivetest.Docker{Tag: "fz:1"}.Entries(layer)...)
	oci := archivetest.Tar(f, nil, archivetest.OCI{Ref: "fz:2", Blob: layer, MediaType: "application/vnd.oci.image.layer.v1.tar"}.Entries(f, layer)...)
	for _, seed := range [][]byte{docker, oci, archivetest.Gzip(f, docker), archivetest.Gzip(f, oci), docker[:700], {}} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, archive []byte, pipe bool) {
		w := t.TempDir()
		s, err := Open(filepath.Join(w, "store"))
		if err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(w, "in")
		if err := os.WriteFile(in, archive, 0o644); err != nil {
			t.Fatal(err)
		}
		var r io.Reader
		if pipe {
			r = bytes.NewReader(archive) // not an *os.File: the stream path
		} else {
			fh, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			r = fh
		}
		_, loadErr := s.LoadArchive(t.Context(), r, compression.None)
		ents, err := os.ReadDir(w)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "store" && e.Name() != "in" {
				t.Fatalf("LoadArchive wrote %s outside the store", e.Name())
			}
		}
		if loadErr != nil {
			if idx, err := s.Index(); err != nil || len(idx.Manifests) != 0 {
				t.Fatalf("refused (%v), but the index has %v (%v)", loadErr, idx, err)
			}
		}
	})
}
