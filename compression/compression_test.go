package compression

import (
	"bytes"
	"io"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/internal/testenv"
)

// What NewWriter writes, Detect names and NewReader gives back; the media
// type follows the kind.
func TestRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("snap layer "), 300000) // several pgzip blocks
	for _, tc := range []struct {
		c    Compression
		want string
	}{
		{None, ocispec.MediaTypeImageLayer},
		{Gzip, ocispec.MediaTypeImageLayerGzip},
		{Zstd, ocispec.MediaTypeImageLayerZstd},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			var blob bytes.Buffer
			w, err := NewWriter(&blob, tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if w == nil {
				blob.Write(data)
			} else {
				if _, err := w.Write(data); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got := Detect(blob.Bytes()[:10]); got != tc.c {
				t.Errorf("Detect: %s, want %s", got, tc.c)
			}
			if got := tc.c.MediaType(); got != tc.want {
				t.Errorf("MediaType: %s, want %s", got, tc.want)
			}
			r, err := NewReader(&blob)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			out, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("read back %d bytes, wrote %d", len(out), len(data))
			}
		})
	}
}

// docker load takes bzip2 and xz: Detect names them, so a caller can tell
// them from a plain tar and refuse them as an OCI layer.
func TestDetectReadOnlyKinds(t *testing.T) {
	for magic, want := range map[string]Compression{
		"BZh91AY&SY":                       Bzip2,
		"\xfd7zXZ\x00\x00\x04":             Xz,
		"etc/\x00\x00\x00\x00\x00\x00\x00": None,
		"":                                 None,
	} {
		if got := Detect([]byte(magic)); got != want {
			t.Errorf("Detect(%q) = %s, want %s", magic, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Compression{"": None, "none": None, "gzip": Gzip, "zstd": Zstd} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"xz", "bzip2", "GZIP", "lz4"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) took it: snap writes none, gzip and zstd only", in)
		}
	}
	if _, err := NewWriter(io.Discard, Xz); err == nil {
		t.Error("NewWriter(xz) took it")
	}
}

// A leaf: it imports nothing of snap's, and the store reaches the
// change-walker (package diff) through it no more (issue 10).
func TestLeaf(t *testing.T) {
	for pkg, banned := range map[string]string{".": "snap/", "../store": "snap/diff"} {
		for _, dep := range testenv.Deps(t, pkg) {
			if strings.HasPrefix(dep, banned) && dep != "snap/compression" {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}
