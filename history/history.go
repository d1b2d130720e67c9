// Package history reads an image's history and renders it the way
// `docker history` does: newest first, the image ID on the top row and
// <missing> below, docker's truncation, units and templates.
package history

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
	"github.com/mattn/go-runewidth"

	"snap/store"
)

// Entry is one row of `docker history`.
type Entry struct {
	ID        string // image ID for the top row, "<missing>" below
	Created   time.Time
	CreatedBy string
	Size      int64 // the layer's content size; 0 for empty layers
	Comment   string
	Tags      []string
}

// Of lists an image's history, newest first. Sizes come from each layer's
// recorded content size.
func Of(img *store.Image) ([]Entry, error) {
	var out []Entry
	layer := 0
	for _, h := range img.Config.History {
		e := Entry{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment}
		if h.Created != nil {
			e.Created = *h.Created
		}
		if !h.EmptyLayer {
			if layer >= len(img.Manifest.Layers) {
				return nil, fmt.Errorf("image %s: history names more layers than it has", img.ID)
			}
			s := img.Manifest.Layers[layer].Annotations[store.AnnotationContentSize]
			if s != "" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("image %s: layer %d size %q: %w", img.ID, layer, s, err)
				}
				e.Size = n
			}
			layer++
		}
		out = append([]Entry{e}, out...)
	}
	if len(out) > 0 {
		out[0].ID, out[0].Tags = img.ID.String(), img.Tags
	}
	return out, nil
}

// Options are docker history's flags.
type Options struct {
	NoTrunc bool
	Human   bool
	Quiet   bool
	Format  string // "", "table ...", "json" or a Go template
	Now     time.Time
}

// row is what templates see: docker's field names, rendered.
type row struct {
	e    Entry
	opts Options
}

func (r row) ID() string {
	if r.e.ID == "<missing>" || r.opts.NoTrunc {
		return r.e.ID
	}
	id := strings.TrimPrefix(r.e.ID, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// CreatedSince is relative ("2 hours ago"), or CreatedAt with -H=false.
func (r row) CreatedSince() string {
	if !r.opts.Human {
		return r.CreatedAt()
	}
	return units.HumanDuration(r.opts.Now.UTC().Sub(time.Unix(r.e.Created.Unix(), 0))) + " ago"
}

// CreatedAt is RFC 3339 in local time, whole seconds, as docker prints it.
func (r row) CreatedAt() string {
	return time.Unix(r.e.Created.Unix(), 0).Format(time.RFC3339)
}

func (r row) CreatedBy() string {
	s := strings.ReplaceAll(r.e.CreatedBy, "\t", " ")
	if r.opts.NoTrunc {
		return s
	}
	return ellipsis(s, 45)
}

func (r row) Size() string {
	if r.opts.Human {
		return units.HumanSizeWithPrecision(float64(r.e.Size), 3)
	}
	return strconv.FormatInt(r.e.Size, 10)
}

func (r row) Comment() string { return r.e.Comment }

// ellipsis cuts s to max display columns, the last one an ellipsis, as the
// docker CLI does (wide runes count twice).
func ellipsis(s string, max int) string {
	if runewidth.StringWidth(s) <= max {
		return s
	}
	var b strings.Builder
	w := 0
	for _, r := range s {
		rw := runewidth.RuneWidth(r)
		if w+rw > max-1 {
			break
		}
		b.WriteRune(r)
		w += rw
	}
	return b.String() + "…"
}

const defaultTable = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

var headers = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
	"Size": "SIZE", "Comment": "COMMENT",
}

// Render writes the entries as docker history would.
func Render(w io.Writer, entries []Entry, opts Options) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	format := opts.Format
	switch {
	case opts.Quiet:
		format = "{{.ID}}"
	case format == "" || format == "table":
		format = defaultTable
		if !opts.Human {
			format = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
		}
	case format == "json":
		for _, e := range entries {
			r := row{e, opts}
			b, err := json.Marshal(map[string]string{
				"Comment": r.Comment(), "CreatedAt": r.CreatedAt(), "CreatedBy": r.CreatedBy(),
				"CreatedSince": r.CreatedSince(), "ID": r.ID(), "Size": r.Size(),
			})
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
				return err
			}
		}
		return nil
	}
	table := strings.HasPrefix(format, "table")
	if table {
		format = strings.TrimSpace(strings.TrimPrefix(format, "table"))
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("history").Parse(format + "\n")
	if err != nil {
		return fmt.Errorf("history format %q: %w", opts.Format, err)
	}
	out := w
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		out = tw
		hdr, err := template.New("header").Parse(format + "\n")
		if err != nil {
			return err
		}
		if err := hdr.Execute(out, headers); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tmpl.Execute(out, row{e, opts}); err != nil {
			return fmt.Errorf("history format %q: %w", opts.Format, err)
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}
