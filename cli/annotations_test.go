package cli

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"snap/commit"
	"snap/sourcing"
	"snap/store"
)

// TestInspectShowsAnnotations: snap inspect shows the manifest's
// annotations as an Annotations object (podman inspect's), and no such key
// for an image without any (docker's view).
func TestInspectShowsAnnotations(t *testing.T) {
	root, rootfs := filepath.Join(t.TempDir(), "store"), t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "f"), []byte("x"), 0o644)
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{"org.opencontainers.image.version": "3", "org.opencontainers.image.base.name": "base:1"}
	for tag, a := range map[string]map[string]string{"plain:1": nil, "ann:1": ann} {
		if _, err := commit.Commit(t.Context(), st, sourcing.Dir{Root: rootfs}, commit.Options{Tag: tag, Annotations: a}); err != nil {
			t.Fatal(err)
		}
	}
	for tag, want := range map[string]map[string]string{"plain:1": nil, "ann:1": ann} {
		out, errs, code := snapIn(t, root, "inspect", tag)
		if code != 0 {
			t.Fatalf("inspect %s: %s", tag, errs)
		}
		var v []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
			t.Fatalf("inspect %s: %v: %s", tag, err, out)
		}
		raw, has := v[0]["Annotations"]
		if want == nil {
			if has {
				t.Errorf("%s: Annotations %s, want no key", tag, raw)
			}
			continue
		}
		var got map[string]string
		if err := json.Unmarshal(raw, &got); err != nil || !maps.Equal(got, want) {
			t.Errorf("%s: Annotations %s (%v), want %v", tag, raw, err, want)
		}
	}
	out, errs, code := snapIn(t, root, "inspect", "-f", `{{index .Annotations "org.opencontainers.image.version"}}`, "ann:1")
	if code != 0 || out != "3\n" {
		t.Errorf("template: exit %d %q %s", code, out, errs)
	}
}
