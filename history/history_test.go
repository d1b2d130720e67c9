package history

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestEllipsisAndSize(t *testing.T) {
	long := "/bin/sh -c apt-get update && apt-get install -y curl"
	tests := []struct {
		e      Entry
		opts   Options
		by, sz string
	}{
		{Entry{CreatedBy: long, Size: 0}, Options{Human: true}, "/bin/sh -c apt-get update && apt-get install…", "0B"},
		{Entry{CreatedBy: long, Size: 5242880}, Options{Human: true, NoTrunc: true}, long, "5.24MB"},
		{Entry{CreatedBy: "tab\there", Size: 1982672}, Options{Human: false}, "tab here", "1982672"},
		{Entry{CreatedBy: strings.Repeat("日", 30), Size: 999}, Options{Human: true}, strings.Repeat("日", 22) + "…", "999B"},
	}
	for _, tc := range tests {
		r := row{tc.e, tc.opts}
		if got := r.CreatedBy(); got != tc.by {
			t.Errorf("CreatedBy = %q, want %q", got, tc.by)
		}
		if got := r.Size(); got != tc.sz {
			t.Errorf("Size = %q, want %q", got, tc.sz)
		}
	}
}

func TestRenderFormats(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	es := []Entry{
		{ID: "sha256:" + strings.Repeat("ab", 32), Created: now.Add(-2 * time.Hour), CreatedBy: "/bin/sh", Size: 10, Comment: "golden"},
		{ID: "<missing>", Created: now.Add(-48 * time.Hour), Size: 1 << 20, Comment: "Imported from -"},
	}
	tests := []struct {
		opts Options
		want string
	}{
		{Options{Human: true, Quiet: true, Now: now}, "abababababab\n<missing>\n"},
		{Options{Human: true, Format: "{{.ID}} {{.CreatedSince}} {{.Size}}", Now: now}, "abababababab 2 hours ago 10B\n<missing> 2 days ago 1.05MB\n"},
		{Options{Human: true, Format: "table {{.ID}}\t{{.Comment}}", Now: now}, "IMAGE          COMMENT\nabababababab   golden\n<missing>      Imported from -\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if err := Render(&b, es, tc.opts); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("Render(%+v)\n got %q\nwant %q", tc.opts, b.String(), tc.want)
		}
	}
	var b bytes.Buffer
	if err := Render(&b, es, Options{Format: "{{.Nope}}", Now: now}); err == nil {
		t.Error("a bad template rendered")
	}
}
