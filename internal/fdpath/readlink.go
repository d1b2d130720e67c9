// Package fdpath holds the small *at(2) helpers that the walker and the
// runtime both need when they read a tree through directory descriptors
// rather than by path, so a symlink swapped in mid-read is never followed.
package fdpath

import "golang.org/x/sys/unix"

// Readlink reads the target of the symlink name in the directory fd (name ""
// with an O_PATH fd reads the link fd itself). readlinkat(2) truncates
// silently, so the buffer grows until the target fits with room to spare.
func Readlink(fd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
