package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"snap/compression"
	"snap/diff"
)

// An overlay upper dir over one lower, written as an uncompressed layer:
// the added file, the deleted one's whiteout, in docker's entry order.
func ExampleWriteLayer() {
	tmp, err := os.MkdirTemp("", "snap-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	lower, upper := filepath.Join(tmp, "lower"), filepath.Join(tmp, "upper")
	for _, f := range []string{filepath.Join(lower, "etc/old"), filepath.Join(upper, "etc/new")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	// An AUFS-style whiteout: a plain file, so the example needs no root
	// to make overlayfs' character device.
	if err := os.WriteFile(filepath.Join(upper, "etc/.wh.old"), nil, 0o600); err != nil {
		log.Fatal(err)
	}
	src := diff.Overlay{Upper: upper, Lowers: []string{lower}, Format: diff.FormatAUFS}

	var layer bytes.Buffer
	res, err := diff.WriteLayer(context.Background(), &layer, src, diff.Options{Compression: compression.None})
	if err != nil {
		log.Fatal(err)
	}

	tr := tar.NewReader(&layer)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(h.Name)
	}
	fmt.Println("entries:", res.Entries, res.MediaType)
	// Output:
	// etc/
	// etc/.wh.old
	// etc/new
	// entries: 3 application/vnd.oci.image.layer.v1.tar
}
