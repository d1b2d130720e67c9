package source

import (
	"errors"
	"fmt"
	"strings"

	"snap/container"
	"snap/sourcing"
)

// Options are what a reference needs besides its name.
type Options struct {
	// Pause freezes a running container while it is walked (commit -p);
	// snap diff reads without pausing, as docker diff does.
	Pause bool
	// Base is the image a dir:// rootfs, or a runc container's rootfs that
	// is no overlay, was made from.
	Base string
	// RuncRoot is runc's state directory; empty: /run/runc.
	RuncRoot string
	// DockerHost is the engine of docker:// containers, as DOCKER_HOST
	// names it; empty: the default socket.
	DockerHost string
	// ContainerdAddress is containerd's socket for containerd://
	// containers; empty: /run/containerd/containerd.sock.
	ContainerdAddress string
	// PodmanHost is podman's service for podman:// containers, as
	// CONTAINER_HOST names it; empty: podman's own socket, or a service
	// started for the commit.
	PodmanHost string
}

// Errors of Parse, wrapped with the reference.
var (
	ErrEmptyName   = errors.New("the name is empty")
	ErrUnknownKind = errors.New("unknown kind of container")
)

// refError says what is wrong with a reference in the user's terms, and is
// ErrEmptyName or ErrUnknownKind to errors.Is.
type refError struct {
	msg string
	err error
}

func (e refError) Error() string { return e.msg }
func (e refError) Unwrap() error { return e.err }

// Parse reads a container reference: NAME (snap's own), docker://NAME,
// containerd://[NAMESPACE/]ID (namespace "default" when none is given),
// podman://NAME, runc://ID or dir://PATH.
func Parse(ref string, opts Options) (sourcing.Source, error) {
	kind, name, ok := strings.Cut(ref, "://")
	if !ok {
		if ref == "" {
			return nil, refError{"the container name is empty", ErrEmptyName}
		}
		return container.Committable{Name: ref, Pause: opts.Pause}, nil
	}
	empty := func(what string) error {
		return refError{fmt.Sprintf("%s://: the %s is empty", kind, what), ErrEmptyName}
	}
	switch kind {
	case "docker":
		if name == "" {
			return nil, empty("container name")
		}
		return Docker{Name: name, Pause: opts.Pause, Host: opts.DockerHost}, nil
	case "podman":
		if name == "" {
			return nil, empty("container name")
		}
		return Podman{Name: name, Pause: opts.Pause, Host: opts.PodmanHost}, nil
	case "runc":
		if name == "" {
			return nil, empty("container id")
		}
		return Runc{ID: name, Root: opts.RuncRoot, Base: opts.Base, Pause: opts.Pause}, nil
	case "containerd":
		ns, id, ok := strings.Cut(name, "/")
		if !ok {
			ns, id = "", name
		} else if ns == "" {
			return nil, empty("namespace")
		}
		if id == "" {
			return nil, empty("container id")
		}
		return Containerd{Namespace: ns, ID: id, Pause: opts.Pause, Address: opts.ContainerdAddress}, nil
	case "dir":
		if name == "" {
			return nil, empty("path")
		}
		return sourcing.Dir{Root: name, Base: opts.Base}, nil
	}
	return nil, refError{fmt.Sprintf("container %q: unknown kind (want NAME, docker://NAME, podman://NAME, containerd://[NAMESPACE/]ID, runc://ID or dir://PATH)", ref), ErrUnknownKind}
}
