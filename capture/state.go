package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"snap/store"
)

// state is what the store keeps of captures: ROOT/capture/.
type state struct{ dir string }

func stateOf(st *store.Store) state { return state{filepath.Join(st.Root(), "capture")} }

// record is the last capture of one file on one base.
type record struct {
	Image   digest.Digest `json:"image"`
	Created time.Time     `json:"created"`
}

func keyHex(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lookupStep returns the image a step made before from the same parent,
// if the store still has it.
func (s state) lookupStep(st *store.Store, key string) *store.Image {
	b, err := os.ReadFile(filepath.Join(s.dir, "steps", key))
	if err != nil {
		return nil
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return nil // not ours: a miss, never a path
	}
	img, err := st.Lookup(d.String())
	if err != nil || img.Err != nil {
		return nil
	}
	return img
}

func (s state) saveStep(key string, id digest.Digest) error {
	return writeAtomic(filepath.Join(s.dir, "steps", key), []byte(id.String()+"\n"))
}

func (s state) lookupRun(key string) (*record, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, "runs", key+".json"))
	if err != nil {
		return nil, false
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.Image.Validate() != nil {
		return nil, false
	}
	return &r, true
}

func (s state) saveRun(key string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.dir, "runs", key+".json"), b)
}

// writeAtomic writes a small state file whole or not at all: a killed
// capture leaves the last good record, or none (a cache miss).
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return store.WriteFileAtomic(path, b)
}
