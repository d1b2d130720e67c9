package diff

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// overlayXattr reports whether an xattr belongs to overlayfs itself; those
// describe the upper dir, not the container's files, and never enter a layer.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// xattrNames lists a path's xattr names, without following symlinks.
func xattrNames(p string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(p, nil)
			if err != nil {
				return nil, fmt.Errorf("listxattr %s: %w", p, err)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr %s: %w", p, err)
		}
		if n == 0 {
			return nil, nil
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

// getXattr reads one xattr; ok is false when it is not set.
func getXattr(p, name string) (val []byte, ok bool, err error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, false, nil
		case errors.Is(err, unix.ERANGE):
			sz, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return nil, false, fmt.Errorf("getxattr %s %s: %w", p, name, err)
			}
			buf = make([]byte, sz+64)
			continue
		case err != nil:
			return nil, false, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		return buf[:n], true, nil
	}
}

// Xattrs returns the xattrs a layer carries for p: all but overlayfs' own.
func Xattrs(p string) (map[string]string, error) {
	names, err := xattrNames(p)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	sort.Strings(names)
	var m map[string]string
	for _, n := range names {
		if overlayXattr(n) {
			continue
		}
		v, ok, err := getXattr(p, n)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[n] = string(v)
	}
	return m, nil
}

// overlayFlag reads a yes/no overlay xattr in either namespace: the mount's
// userxattr option decides which one overlayfs wrote, and snap cannot know it.
func overlayFlag(p, name string) (bool, error) {
	for _, ns := range []string{"trusted.overlay.", "user.overlay."} {
		v, ok, err := getXattr(p, ns+name)
		if err != nil {
			return false, err
		}
		if ok && string(v) == "y" {
			return true, nil
		}
	}
	return false, nil
}

// overlayHas reports whether either namespace sets the overlay xattr at all.
func overlayHas(p, name string) (bool, error) {
	for _, ns := range []string{"trusted.overlay.", "user.overlay."} {
		_, ok, err := getXattr(p, ns+name)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}
