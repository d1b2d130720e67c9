package store

import (
	"bytes"
	"path/filepath"
	"testing"

	"snap/compression"
)

// Packages outside the store find an unpacked layer by asking it (LayerPath,
// LayersDir), never by joining its private layout themselves (issue 10):
// LayerDir unpacks where LayerPath says, in LayersDir, where snap's own
// overlay mounts name their lowers relative to.
func TestLayerPathIsWhereLayerDirUnpacks(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc, diffID, err := s.AddLayer(t.Context(), bytes.NewReader(layerTar(t, "etc/motd", "hi\n")), compression.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.LayerDir(desc, diffID)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.LayerPath(diffID); dir != p || filepath.Dir(p) != s.LayersDir() {
		t.Errorf("unpacked at %s; LayerPath %s, LayersDir %s", dir, p, s.LayersDir())
	}
}
