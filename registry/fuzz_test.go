package registry

import (
	"strings"
	"testing"
)

// FuzzParseReference: whatever a user or a capture file gives, parsing
// never panics, and what it accepts is a registry with no path in it (it
// becomes a certs.d directory) and a repository with no ".." (it becomes
// a URL path), that parses again to itself.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/team/app:1", "127.0.0.1:5000/a@sha256:" + strings.Repeat("a", 64),
		"a/../b", "HOST/x", "[::1]:5000/x:y", "x:", "docker.io/library/x", "-x", "x/.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s, Options{})
		if _, rerr := parseRegistry(s, Options{}); rerr == nil {
			// a registry: the same rules for its name
			if reg, _ := parseRegistry(s, Options{}); strings.ContainsAny(reg.RegistryStr(), `/\`) {
				t.Fatalf("registry %q from %q", reg.RegistryStr(), s)
			}
		}
		if err != nil {
			return
		}
		reg, repo := ref.Context().RegistryStr(), ref.Context().RepositoryStr()
		if strings.ContainsAny(reg, `/\`) || reg == "" {
			t.Fatalf("%q: registry %q", s, reg)
		}
		for _, c := range strings.Split(repo, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("%q: repository %q", s, repo)
			}
		}
		again, err := ParseReference(ref.String(), Options{})
		if err != nil || again.String() != ref.String() {
			t.Fatalf("%q: %q parses to %v (%v)", s, ref.String(), again, err)
		}
	})
}
