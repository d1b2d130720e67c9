// Package drift tells what differs between two images' filesystems, as
// `docker diff` tells it for a container: A, C and D lines, with sizes. It
// reads the layers' tar headers, applying each image's layers in order in
// memory; nothing is unpacked to disk, and file contents are hashed only
// where the headers cannot decide.
package drift

import (
	"encoding/json"
	"fmt"

	"snap/diff"
)

// Kind says how a path differs, as `docker diff` prints it.
type Kind byte

const (
	Added   Kind = 'A'
	Changed Kind = 'C'
	Deleted Kind = 'D'
)

func (k Kind) String() string { return string(k) }

// MarshalText makes a Kind "A", "C" or "D" in JSON, as docker's API shows
// it in words, not as the number a byte would be.
func (k Kind) MarshalText() ([]byte, error) { return []byte{byte(k)}, nil }

// UnmarshalText reads what MarshalText writes.
func (k *Kind) UnmarshalText(b []byte) error {
	if len(b) != 1 || (b[0] != 'A' && b[0] != 'C' && b[0] != 'D') {
		return fmt.Errorf("change kind %q: want A, C or D", b)
	}
	*k = Kind(b[0])
	return nil
}

// The Type of a Change.
const (
	TypeFile     = "file"
	TypeHardlink = "hardlink" // a regular file the layer stores as a link to another path
	TypeDir      = "dir"
	TypeSymlink  = "symlink"
	TypeChar     = "char"
	TypeBlock    = "block"
	TypeFifo     = "fifo"
)

// NoSize is a Change's Size or OldSize where that side holds no regular file.
const NoSize = -1

// Change is one path whose entry differs between two filesystems.
type Change struct {
	Kind Kind
	// Path is absolute, slash-separated (/etc/motd).
	Path string
	// Type is the new entry's type (the old one's for Deleted), one of the
	// Type constants; empty when unknown.
	Type string
	// Size is the new regular file's size, NoSize if there is none (Deleted,
	// or not a regular file); OldSize the old one's, NoSize likewise.
	Size, OldSize int64
}

// String renders the change as a `docker diff` line followed, for a
// regular file, by its size: "C /etc/motd  (12 B, was 11 B)". A path
// holding characters a terminal would misread (a newline would forge a
// second line) is quoted Go-style (diff.QuotePath), as diff.Change.String does.
func (c Change) String() string {
	s := string(c.Kind) + " " + diff.QuotePath(c.Path)
	switch {
	case c.Kind == Deleted && c.OldSize >= 0:
		s += fmt.Sprintf("  (%d B)", c.OldSize)
	case c.Kind == Deleted || c.Size < 0:
	case c.Kind == Changed && c.OldSize >= 0 && c.OldSize != c.Size:
		s += fmt.Sprintf("  (%d B, was %d B)", c.Size, c.OldSize)
	default:
		s += fmt.Sprintf("  (%d B)", c.Size)
	}
	return s
}

// MarshalJSON leaves out what is unknown or not there: Type when empty,
// Size and OldSize when NoSize.
func (c Change) MarshalJSON() ([]byte, error) {
	type out struct {
		Kind    Kind
		Path    string
		Type    string `json:",omitempty"`
		Size    *int64 `json:",omitempty"`
		OldSize *int64 `json:",omitempty"`
	}
	o := out{Kind: c.Kind, Path: c.Path, Type: c.Type}
	if c.Size >= 0 {
		o.Size = &c.Size
	}
	if c.OldSize >= 0 {
		o.OldSize = &c.OldSize
	}
	return json.Marshal(o)
}

// UnmarshalJSON reads what MarshalJSON writes: a missing size is NoSize.
func (c *Change) UnmarshalJSON(b []byte) error {
	var in struct {
		Kind    Kind
		Path    string
		Type    string
		Size    *int64
		OldSize *int64
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*c = Change{Kind: in.Kind, Path: in.Path, Type: in.Type, Size: NoSize, OldSize: NoSize}
	if in.Size != nil {
		c.Size = *in.Size
	}
	if in.OldSize != nil {
		c.OldSize = *in.OldSize
	}
	return nil
}
