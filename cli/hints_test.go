package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"
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
