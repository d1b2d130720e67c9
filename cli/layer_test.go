package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"snap/compression"
)

// `snap layer -o` prints the diffID, then the blob's digest when the blob
// is compressed; WriteLayer hashes only the tar, so the blob's digest is
// hashed by the command itself (issue 10). Both must be what the file holds.
func TestLayerOutputDigests(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	u := t.TempDir()
	if err := os.WriteFile(filepath.Join(u, "f"), []byte(strings.Repeat("snap ", 1<<18)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []compression.Compression{compression.None, compression.Gzip, compression.Zstd} {
		t.Run(string(c), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "layer")
			lines := strings.Fields(runOut(t, "layer", "--upper", u, "-o", out, "--compression", string(c)))
			blob, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer blob.Close()
			blobDigest, err := digest.FromReader(blob)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := blob.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			tr, err := compression.NewReader(blob)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			diffID, err := digest.FromReader(tr)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{diffID.String()}
			if c != compression.None {
				want = append(want, blobDigest.String())
			}
			if strings.Join(lines, " ") != strings.Join(want, " ") {
				t.Errorf("printed %q, the file's diffID and digest are %q", lines, want)
			}
		})
	}
}
