package source

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOverlayDirs: an overlay's layers come from lowerdir= (the mount(2)
// way) and from lowerdir+= (one per lower: how snap mounts since images may
// be deeper than a page of options allows); names relative to the store's
// layers (snap's own mounts) are found there, and any other relative name
// is refused rather than guessed.
func TestOverlayDirs(t *testing.T) {
	layers := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(layers, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(layers, "a"), filepath.Join(layers, "b")
	tests := []struct {
		name, opts string
		upper      string
		lowers     []string
		wantErr    bool
	}{
		{"legacy", "rw,lowerdir=/l/1:/l/2,upperdir=/u,workdir=/w", "/u", []string{"/l/1", "/l/2"}, false},
		{"one by one", "rw,lowerdir+=/l/1,lowerdir+=/l/2,upperdir=/u,workdir=/w,uuid=on", "/u", []string{"/l/1", "/l/2"}, false},
		{"snap's relative names", "rw,lowerdir+=../x,lowerdir+=a,lowerdir+=b,upperdir=/u,workdir=/w", "", nil, true},
		{"relative in the layers", "rw,lowerdir+=a,lowerdir+=b,upperdir=/u,workdir=/w", "/u", []string{a, b}, false},
		{"relative elsewhere", "rw,lowerdir=l/ABC:l/DEF,upperdir=/u,workdir=/w", "", nil, true},
		{"read-only", "ro,lowerdir=/l/1:/l/2", "", []string{"/l/1", "/l/2"}, false},
	}
	for _, tc := range tests {
		upper, lowers, err := overlayDirs(tc.opts, layers)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want one: %v", tc.name, err, tc.wantErr)
			continue
		}
		if err == nil && (upper != tc.upper || !slices.Equal(lowers, tc.lowers)) {
			t.Errorf("%s: upper %q lowers %q, want %q %q", tc.name, upper, lowers, tc.upper, tc.lowers)
		}
	}
}
