package diff

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

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
	layer, _, err := readXattrs(p)
	return layer, err
}

// readXattrs lists p's xattrs once and splits them into those a layer
// carries and overlayfs' own, the latter keyed without their namespace
// ("opaque", "redirect", ...): the mount's userxattr option decides which
// namespace overlayfs wrote, and snap cannot know it, so both count.
func readXattrs(p string) (layer, overlay map[string]string, err error) {
	names, err := xattrNames(p)
	if err != nil || len(names) == 0 {
		return nil, nil, err
	}
	for _, n := range names {
		v, ok, err := getXattr(p, n)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		layer, overlay = classifyXattr(layer, overlay, n, v)
	}
	return layer, overlay, nil
}

// classifyXattr files one xattr: overlayfs' own under its short name (they
// steer the walk, never travel), every other one into the layer's.
func classifyXattr(layer, overlay map[string]string, key string, v []byte) (map[string]string, map[string]string) {
	if short, isOverlay := overlayKey(key); isOverlay {
		if overlay == nil {
			overlay = map[string]string{}
		}
		overlay[short] = string(v)
		return layer, overlay
	}
	if layer == nil {
		layer = map[string]string{}
	}
	layer[key] = string(v)
	return layer, overlay
}

func overlayKey(name string) (string, bool) {
	// user.fuseoverlayfs.* are fuse-overlayfs' own (origin of a copy-up),
	// never seen through its mount.
	for _, ns := range []string{"trusted.overlay.", "user.overlay.", "user.fuseoverlayfs."} {
		if short, ok := strings.CutPrefix(name, ns); ok {
			return short, true
		}
	}
	return "", false
}
