package capture

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"snap/diff"
	"snap/store"
)

func TestPushRefs(t *testing.T) {
	for _, tc := range []struct {
		target string
		tags   []string
		want   []string
	}{
		{"reg:5000/golden/web", []string{"golden/web:2026-11-23", "golden/web:latest"}, []string{"reg:5000/golden/web:2026-11-23", "reg:5000/golden/web:latest"}},
		{"reg:5000/golden/web", nil, []string{"reg:5000/golden/web:latest"}},
		{"reg:5000/golden/web:v1", []string{"golden/web:latest"}, []string{"reg:5000/golden/web:v1"}},
		{"reg:5000/golden/web@sha256:" + strings.Repeat("a", 64), []string{"a:b"}, []string{"reg:5000/golden/web@sha256:" + strings.Repeat("a", 64)}},
		// The port is no tag: the repository takes the tags.
		{"localhost:5000/web", []string{"x:1"}, []string{"localhost:5000/web:1"}},
		// A tag without a tag part (as a store never gives) is skipped.
		{"reg/web", []string{"noport"}, []string{"reg/web:latest"}},
		// A tag with a registry port but no tag part: the port is not a tag.
		{"reg/web", []string{"localhost:5000/x"}, []string{"reg/web:latest"}},
	} {
		if got := pushRefs(tc.target, tc.tags); !slices.Equal(got, tc.want) {
			t.Errorf("pushRefs(%q, %q) = %q, want %q", tc.target, tc.tags, got, tc.want)
		}
	}
}

func TestLayerRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    File
		has  []diff.Rule
		not  []string // patterns that must not be in the filter
	}{
		{"excludes only", File{Exclude: []Exclude{{Path: "/var/cache/junk/**"}, {Path: "/etc/secret", Whiteout: true}}},
			[]diff.Rule{{Pattern: "/var/cache/junk/**", Action: diff.Omit}, {Pattern: "/etc/secret", Action: diff.Omit}},
			[]string{"/var/log/**", "/etc/machine-id"}},
		{"generalize", File{Generalize: true},
			[]diff.Rule{{Pattern: "/etc/machine-id", Action: diff.Truncate}, {Pattern: "/var/log/**", Action: diff.Truncate},
				{Pattern: "/tmp/**", Action: diff.Omit}, {Pattern: "/etc/ssh/ssh_host_*", Action: diff.Omit},
				{Pattern: "/var/cache/apt/archives/*.deb", Action: diff.Omit}},
			// apt's lists have exceptions (lock, partial) that a filter
			// cannot express: left to the clean step, as are the exceptions.
			[]string{"/var/lib/apt/lists/**", "/var/lib/apt/lists/lock", "/var/lib/apt/lists/partial"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := layerRules(&tc.f)
			for _, r := range tc.has {
				if !slices.Contains(got, r) {
					t.Errorf("no %+v in %+v", r, got)
				}
			}
			for _, p := range tc.not {
				if slices.ContainsFunc(got, func(r diff.Rule) bool { return r.Pattern == p }) {
					t.Errorf("%s is in the layer filter: %+v", p, got)
				}
			}
			if _, err := diff.CompileRules(got); err != nil {
				t.Errorf("the filter does not compile: %v", err)
			}
		})
	}
}

func TestKeyHex(t *testing.T) {
	k := keyHex("a", "b")
	if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Fatalf("keyHex = %q, not 64 hex digits (it becomes a file name)", k)
	}
	for _, other := range [][]string{{"ab"}, {"a", "b", ""}, {"ab", ""}, {"", "ab"}, {"a\n1:b"}, {"b", "a"}} {
		if keyHex(other...) == k {
			t.Errorf("keyHex(%q) == keyHex(a, b): parts are not framed", other)
		}
	}
	if keyHex("a", "b") != k {
		t.Errorf("keyHex is not stable")
	}
}

// testStore is a store holding one image (no layers), and that image.
func testStore(t *testing.T) (*store.Store, *store.Image) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := st.PutAll(context.Background(), []store.NewImage{{
		Config: []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`),
		Tags:   []string{"t:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return st, imgs[0]
}

// TestStateLookups: the step and run records give the image they name
// while the store has it; anything else in them (a path, garbage, a
// removed image, a record cut short) is a miss, never a path read.
func TestStateLookups(t *testing.T) {
	st, img := testStore(t)
	s := stateOf(st)
	key := keyHex("k")
	if s.lookupStep(st, key) != nil {
		t.Fatalf("a step hit in an empty state")
	}
	if _, ok := s.lookupRun(key); ok {
		t.Fatalf("a run hit in an empty state")
	}
	if err := s.saveStep(key, img.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.saveRun(key, record{Image: img.ID}); err != nil {
		t.Fatal(err)
	}
	if got := s.lookupStep(st, key); got == nil || got.ID != img.ID {
		t.Fatalf("lookupStep = %v, want %s", got, img.ID)
	}
	if r, ok := s.lookupRun(key); !ok || r.Image != img.ID {
		t.Fatalf("lookupRun = %v %v, want %s", r, ok, img.ID)
	}
	// A file outside the store that a path in a record would reach.
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte(img.ID.String()), 0o644)
	removed := digest.FromString("an image that was removed")
	for _, tc := range []struct{ name, step, run string }{
		{"relative path", "../../../etc/passwd", `{"image":"../../../etc/passwd"}`},
		{"absolute path", outside, `{"image":"` + outside + `"}`},
		{"garbage", "\x00\xff{", "\x00\xff{"},
		{"empty", "", ""},
		{"cut short", img.ID.String()[:20], `{"image":"` + img.ID.String()[:20]},
		{"removed image", removed.String(), `{"image":"` + removed.String() + `"}`},
		{"a tag", "t:1", `{"image":"t:1"}`},
		{"other algorithm", "md5:" + strings.Repeat("0", 32), `{"image":"md5:` + strings.Repeat("0", 32) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(s.dir, "steps", key), []byte(tc.step), 0o600)
			os.WriteFile(filepath.Join(s.dir, "runs", key+".json"), []byte(tc.run), 0o600)
			if got := s.lookupStep(st, key); got != nil {
				t.Errorf("lookupStep of %q = %s, want a miss", tc.step, got.ID)
			}
			if r, ok := s.lookupRun(key); ok {
				// A run record is only a candidate: the capture then looks
				// its image up and must miss.
				if i, err := st.Lookup(r.Image.String()); err == nil && i.Err == nil {
					t.Errorf("lookupRun of %q = %s, an image", tc.run, r.Image)
				}
			}
		})
	}
	// A record naming an image later removed from the store.
	s.saveStep(key, img.ID)
	if _, err := st.Remove("t:1"); err != nil {
		t.Fatal(err)
	}
	if got := s.lookupStep(st, key); got != nil {
		t.Errorf("lookupStep of a removed image = %s", got.ID)
	}
	// What a write leaves: the record and no temp file.
	ents, _ := os.ReadDir(filepath.Join(s.dir, "steps"))
	for _, e := range ents {
		if e.Name() != key {
			t.Errorf("left in steps/: %s", e.Name())
		}
	}
}

// TestWriteAtomicReplaces: a record written over an existing one is the
// new one whole, and no temp file is left.
func TestWriteAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "rec")
	for _, body := range []string{strings.Repeat("x", 1<<16), "short\n"} {
		if err := writeAtomic(p, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != body {
			t.Errorf("record is %d bytes, want %d", len(b), len(body))
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("left: %v", ents)
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode: %v %v", fi.Mode(), err)
	}
}
