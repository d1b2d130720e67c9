package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLibraryErrorsNameNoFlag: the libraries' errors say what is wrong in
// their terms; the CLI adds the flag that answers it, however deep the
// error is wrapped, and leaves other errors as they are.
func TestLibraryErrorsNameNoFlag(t *testing.T) {
	for _, h := range hints {
		if strings.Contains(h.err.Error(), "--") {
			t.Errorf("library error %q names a flag", h.err)
		}
		err := withHint(fmt.Errorf("commit x: %w", fmt.Errorf("open: %w", h.err)))
		if !strings.HasSuffix(err.Error(), ": "+h.hint) || !errors.Is(err, h.err) {
			t.Errorf("%v: got %q, want the hint %q and the error kept", h.err, err, h.hint)
		}
	}
	plain := errors.New("image x: not found")
	if got := withHint(plain); got != plain {
		t.Errorf("an error with no hint became %q", got)
	}
}

// TestUpperRefusalNamesRootfsFlag: snap layer --upper of an upper made
// with redirect_dir says, in one line, to use --rootfs (the library says
// only that the upper is incomplete).
func TestUpperRefusalNamesRootfsFlag(t *testing.T) {
	requireRoot(t, "trusted.overlay xattrs")
	u := t.TempDir()
	if err := os.Mkdir(filepath.Join(u, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(u, "moved"), "trusted.overlay.redirect", []byte("/old"), 0); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"snap", "layer", "--upper", u, "-o", filepath.Join(t.TempDir(), "l.tar")}, &stdout, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "use --rootfs with the merged dir instead") {
		t.Errorf("exit %d, stderr %q: want one line pointing to --rootfs", code, stderr.String())
	}
}
