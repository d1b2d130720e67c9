package registry

import (
	"context"
	"errors"
	"strings"

	"snap/store"
)

// NamesRegistry reports whether ref names its registry (its first component
// holds a '.' or a ':' or is localhost, as docker tells a host from a
// repository path): only such a reference is pulled when it is missing, so
// that a mistyped local name is never looked up on Docker Hub.
func NamesRegistry(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// Ensure returns the store's image ref, pulling it first when the store has
// no such image and ref names a registry. before, if not nil, is called
// just before a pull starts (docker prints "Unable to find image").
func Ensure(ctx context.Context, st *store.Store, ref string, opts Options, before func()) (*store.Image, error) {
	img, err := st.Lookup(ref)
	var broken *store.BrokenImageError
	if err == nil || !errors.Is(err, store.ErrNotFound) || errors.As(err, &broken) || !NamesRegistry(ref) {
		return img, err
	}
	if before != nil {
		before()
	}
	p, err := Pull(ctx, st, ref, opts)
	if err != nil {
		return nil, err
	}
	return p.Image, nil
}
