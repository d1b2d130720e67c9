// Package inspect gives snap's images and containers as `docker inspect`
// shows them: typed views with the Engine API's field names, types and zero
// values, looked up by name as docker looks them up, and rendered as its CLI
// renders them (indented JSON, or a --format template with docker's
// functions). The CLI's inspect commands are a thin layer over it.
package inspect

import (
	"errors"
	"fmt"

	"snap/container"
	"snap/store"
)

// Kind is what a name may name; KindAny tries containers, then images, as
// docker inspect does.
type Kind string

const (
	KindAny       Kind = ""
	KindImage     Kind = "image"
	KindContainer Kind = "container"
)

// ParseKind reads docker inspect's --type.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindAny, KindImage, KindContainer:
		return k, nil
	}
	return "", fmt.Errorf("unknown type: %q: must be one of %q, %q", s, KindContainer, KindImage)
}

// ErrNotFound is the error for a name nothing of the asked kind has.
var ErrNotFound = errors.New("no such object")

// Finder looks names up in one store and its containers.
type Finder struct {
	Store      *store.Store
	Containers *container.Manager
}

// NewFinder looks up in st and the containers made from it.
func NewFinder(st *store.Store) Finder {
	return Finder{Store: st, Containers: container.New(st)}
}

// Find returns the *Container or *Image that name names. A name that names
// nothing gives an error wrapping ErrNotFound, in docker's words.
func (f Finder) Find(name string, kind Kind) (any, error) {
	if kind != KindImage {
		meta, err := f.Containers.Get(name)
		switch {
		case err == nil:
			return ContainerOf(f.Store, f.Containers, meta)
		case !errors.Is(err, container.ErrNotFound):
			return nil, err
		case kind == KindContainer:
			return nil, notFound{kind, name}
		}
	}
	img, err := f.Store.Lookup(name)
	var broken *store.BrokenImageError
	switch {
	case err == nil:
		return ImageOf(f.Store, img)
	case errors.As(err, &broken), !errors.Is(err, store.ErrNotFound):
		return nil, err
	case kind == KindImage:
		return nil, notFound{kind, name}
	}
	return nil, notFound{kind, name}
}

// notFound words a missing name as docker does; a name that is no object at
// all gets docker's own "Error: " prefix, as its CLI prints it.
type notFound struct {
	kind Kind
	name string
}

func (e notFound) Error() string {
	switch e.kind {
	case KindContainer:
		return "No such container: " + e.name
	case KindImage:
		return "No such image: " + e.name
	}
	return "Error: No such object: " + e.name
}

func (e notFound) Unwrap() error { return ErrNotFound }
