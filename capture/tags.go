package capture

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/opencontainers/go-digest"

	"snap/registry"
	"snap/store"
)

// TagData is what tag and push templates are rendered from.
type TagData struct {
	// Time is the capture's time (Options.SourceDateEpoch when set);
	// {{.Date}} is its UTC date.
	Time time.Time
	// BaseDigest is the base image's digest (its ID); {{.BaseDigest}} is
	// its first 12 hex digits, as docker shows an ID.
	BaseDigest digest.Digest
	// BaseName is the base as the file names it, {{.BaseName}}.
	BaseName string
}

// tagView is the template's dot: {{.Date}}, {{.BaseDigest}},
// {{.BaseName}}, {{.Vars.NAME}}.
type tagView struct {
	Date       string
	BaseDigest string
	BaseName   string
	Vars       map[string]string
}

// RenderTags renders the file's tags and checks each as a local tag;
// the results are normalized as the store keeps them ("web" is
// "web:latest").
func (f *File) RenderTags(d TagData) ([]string, error) {
	return f.render(f.Tags, d, false)
}

// RenderPush renders the file's push targets and checks each as a registry
// reference.
func (f *File) RenderPush(d TagData) ([]string, error) {
	return f.render(f.Push, d, true)
}

func (f *File) render(l []string, d TagData, push bool) ([]string, error) {
	// Not Encoded: it panics on a digest without an algorithm.
	_, hex, _ := strings.Cut(string(d.BaseDigest), ":")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	v := tagView{Date: d.Time.UTC().Format(time.DateOnly), BaseDigest: hex, BaseName: d.BaseName, Vars: f.Vars}
	out := make([]string, 0, len(l))
	for _, t := range l {
		r, err := renderTag(t, v, push)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// sampleTagData renders templates at parse time, to find their mistakes
// before any step runs.
func sampleTagData(vars map[string]string) tagView {
	return tagView{Date: "2006-01-02", BaseDigest: "0123456789ab", BaseName: "base", Vars: vars}
}

// renderTag renders one template and checks the result.
func renderTag(t string, v tagView, push bool) (string, error) {
	s := t
	if strings.Contains(t, "{{") {
		tmpl, err := template.New("tag").Option("missingkey=error").Parse(t)
		if err != nil {
			return "", fmt.Errorf("%q: %w", t, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, v); err != nil {
			return "", fmt.Errorf("%q: %w", t, err)
		}
		s = b.String()
	}
	if push {
		if _, err := registry.ParseReference(s, registry.Options{}); err != nil {
			return "", err
		}
		return s, nil
	}
	r, err := store.ParseRef(s)
	if err != nil {
		return "", err
	}
	return r, nil
}
