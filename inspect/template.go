package inspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"
)

// Funcs are the functions docker's CLI gives every --format template
// (docker/cli templates.basicFunctions); text/template's own, println
// among them, come with every template.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"json":     jsonString,
		"split":    strings.Split,
		"join":     strings.Join,
		"title":    title,
		"lower":    strings.ToLower,
		"upper":    strings.ToUpper,
		"pad":      pad,
		"truncate": truncate,
	}
}

// ParseTemplate parses a --format template with docker's functions, named
// "" as docker's are, so error messages read as docker's.
func ParseTemplate(format string) (*template.Template, error) {
	return template.New("").Funcs(Funcs()).Parse(format)
}

// jsonString is docker's json: no HTML escaping, no trailing newline, and
// nothing for a value JSON cannot hold.
func jsonString(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSpace(b.String())
}

// title is strings.Title (deprecated in Go, kept by docker): the first
// letter of each word upper-cased, the rest left alone.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		if wordBreak(prev) {
			prev = r
			return unicode.ToTitle(r)
		}
		prev = r
		return r
	}, s)
}

func wordBreak(r rune) bool {
	if r < utf8.RuneSelf {
		switch {
		case '0' <= r && r <= '9', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r == '_':
			return false
		}
		return true
	}
	if unicode.IsLetter(r) || unicode.IsDigit(r) {
		return false
	}
	return unicode.IsSpace(r)
}

// pad surrounds a non-empty string with spaces.
func pad(s string, prefix, suffix int) string {
	if s == "" {
		return s
	}
	return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix)
}

// truncate cuts a string to at most n bytes.
func truncate(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

// ErrTemplate marks a --format that does not parse: the caller's mistake.
var ErrTemplate = errors.New("template parsing error")

// Printer writes inspect views as `docker inspect` does: with no format an
// indented JSON array, with "json" a compact one, otherwise one template
// result per object. Output is held until Flush, as docker's is, so the
// objects that were found print even when others were not.
type Printer struct {
	w     io.Writer
	tmpl  *template.Template
	json  bool // compact
	views []any
	out   bytes.Buffer
}

// NewPrinter parses format; its error wraps ErrTemplate.
func NewPrinter(w io.Writer, format string) (*Printer, error) {
	p := &Printer{w: w}
	switch format {
	case "":
	case "json":
		p.json = true
	default:
		t, err := ParseTemplate(format)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
		}
		p.tmpl = t
	}
	return p, nil
}

// Add renders one view. A template that fails on the typed view runs again
// on its JSON as maps, where a missing key is an error, as docker's CLI
// falls back to the raw response.
func (p *Printer) Add(v any) error {
	if p.tmpl == nil {
		p.views = append(p.views, v)
		return nil
	}
	var b bytes.Buffer
	if err := p.tmpl.Execute(&b, v); err != nil {
		raw, jerr := marshal(v, "")
		if jerr != nil {
			return jerr
		}
		var m any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return err
		}
		b.Reset()
		strict, err := p.tmpl.Clone()
		if err != nil {
			return err
		}
		if err := strict.Option("missingkey=error").Execute(&b, m); err != nil {
			return fmt.Errorf("%w: %v", ErrTemplate, err)
		}
	}
	p.out.Write(b.Bytes())
	p.out.WriteByte('\n')
	return nil
}

// Flush writes what was added: `[]` when nothing was, as docker prints.
func (p *Printer) Flush() error {
	if p.tmpl != nil {
		if p.out.Len() == 0 {
			p.out.WriteByte('\n')
		}
		_, err := p.w.Write(p.out.Bytes())
		return err
	}
	views := p.views
	if views == nil {
		views = []any{}
	}
	indent := "    "
	if p.json {
		indent = ""
	}
	b, err := marshal(views, indent)
	if err != nil {
		return err
	}
	_, err = p.w.Write(b)
	return err
}

// marshal encodes as dockerd does: no HTML escaping ("Ops <ops@x>" stays
// readable), a newline at the end.
func marshal(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
