package source

import (
	"errors"
	"slices"
	"testing"

	"snap/container"
	"snap/internal/testenv"
	"snap/sourcing"
)

// TestParse: each kind of reference gives its source with the options it
// needs, and a bad one an error that says what is wrong in the user's
// terms and is a sentinel to errors.Is.
func TestParse(t *testing.T) {
	opts := Options{Pause: true, Base: "base:1", RuncRoot: "/run/x", DockerHost: "unix:///d.sock", ContainerdAddress: "/c.sock", PodmanHost: "unix:///p.sock"}
	tests := []struct {
		ref     string
		want    sourcing.Source
		wantErr error
		msg     string
	}{
		{"build", container.Committable{Name: "build", Pause: true}, nil, ""},
		{"docker://web", Docker{Name: "web", Pause: true, Host: "unix:///d.sock"}, nil, ""},
		{"docker://a://b", Docker{Name: "a://b", Pause: true, Host: "unix:///d.sock"}, nil, ""},
		{"containerd://web", Containerd{ID: "web", Pause: true, Address: "/c.sock"}, nil, ""},
		{"containerd://k8s.io/abc", Containerd{Namespace: "k8s.io", ID: "abc", Pause: true, Address: "/c.sock"}, nil, ""},
		{"containerd://default/web", Containerd{Namespace: "default", ID: "web", Pause: true, Address: "/c.sock"}, nil, ""},
		{"containerd://", nil, ErrEmptyName, "containerd://: the container id is empty"},
		{"containerd://k8s.io/", nil, ErrEmptyName, "containerd://: the container id is empty"},
		{"containerd:///web", nil, ErrEmptyName, "containerd://: the namespace is empty"},
		{"podman://web", Podman{Name: "web", Pause: true, Host: "unix:///p.sock"}, nil, ""},
		{"podman://", nil, ErrEmptyName, "podman://: the container name is empty"},
		{"runc://abc", Runc{ID: "abc", Root: "/run/x", Base: "base:1", Pause: true}, nil, ""},
		{"dir:///srv/rootfs", sourcing.Dir{Root: "/srv/rootfs", Base: "base:1"}, nil, ""},
		{"", nil, ErrEmptyName, "the container name is empty"},
		{"docker://", nil, ErrEmptyName, "docker://: the container name is empty"},
		{"runc://", nil, ErrEmptyName, "runc://: the container id is empty"},
		{"dir://", nil, ErrEmptyName, "dir://: the path is empty"},
		{"ftp://x", nil, ErrUnknownKind, `container "ftp://x": unknown kind (want NAME, docker://NAME, podman://NAME, containerd://[NAMESPACE/]ID, runc://ID or dir://PATH)`},
	}
	for _, tc := range tests {
		got, err := Parse(tc.ref, opts)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || err.Error() != tc.msg {
				t.Errorf("Parse(%q): error %v, want %q (%v)", tc.ref, err, tc.msg, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", tc.ref, got, err, tc.want)
		}
		if err == nil && got.String() != tc.ref {
			t.Errorf("Parse(%q).String() = %q", tc.ref, got.String())
		}
	}
}

// TestBelowCommit: the source contract sits below commit, so sources
// (package source, and snap's own containers) never import commit, and the
// contract imports no source.
func TestBelowCommit(t *testing.T) {
	for pkg, banned := range map[string][]string{
		".":            {"snap/commit"},
		"../container": {"snap/commit"},
		"../sourcing":  {"snap/commit", "snap/source", "snap/container"},
	} {
		for _, dep := range testenv.Deps(t, pkg) {
			if slices.Contains(banned, dep) {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}
