package fdpath

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is returned (wrapped) by ReadRegular for a path that is no
// regular file, or one larger than its bound.
var ErrNotRegular = errors.New("not a regular file of a bounded size")

// ReadRegular reads the regular file at path, of at most max bytes: a file a
// user names (a seccomp profile, a registry's CA). A FIFO would block the
// open and the read forever, and a signal cannot end snap there (hence
// O_NONBLOCK); /dev/zero would be read until memory ran out; a file that
// grows past max while it is read is refused too.
func ReadRegular(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrNotRegular, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrNotRegular, max)
	}
	return b, nil
}
