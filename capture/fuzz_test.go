package capture

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds hostile capture files to Parse: it must never panic or
// hang, every refusal is ErrFile on one line, and what it takes holds the
// invariants the orchestration relies on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullFile))
	for _, s := range []string{
		"base: b\n",
		"base: b\nsteps:\n- run: a\n  user: b\n",
		"base: ${B}\nvars: {B: x}\ntags: ['a:{{.Vars.B}}']\n",
		"base: b\nexclude: [/a/**, {path: /b, whiteout: true}]\n",
		"a: &a [*a, *a]\nbase: *a\n",
		"base: &b x\nsteps:\n- run: *b\n- env: {*b: *b}\n",
		"base: b\ncommit: {changes: ['CMD [\"a\"]'], labels: {a: b}}\n",
		"base: b\nsteps:\n- copy: {src: a, dst: /a/, owner: 'u:g', mode: 0755}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "/nonexistent", map[string]string{"V": "v"})
		if err != nil {
			if !errors.Is(err, ErrFile) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal %q is not ErrFile on one line", err)
			}
			return
		}
		if strings.TrimSpace(file.Base) == "" || (file.Network != NetworkHost && file.Network != NetworkNone) {
			t.Fatalf("taken: base %q network %q", file.Base, file.Network)
		}
		for _, s := range append(append([]Step{}, file.Steps...), file.Verify...) {
			n := 0
			for _, set := range []bool{s.Run != "", s.Copy != nil, s.Env != nil, s.Workdir != "", s.User != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("step at line %d has %d kinds", s.Line, n)
			}
			if s.Copy != nil && checkSource(s.Copy.Src) != nil {
				t.Fatalf("copy source %q taken", s.Copy.Src)
			}
		}
		for _, v := range file.Verify {
			if v.Kind() != "run" {
				t.Fatalf("verify step of kind %s taken", v.Kind())
			}
		}
		for _, e := range file.Exclude {
			if !strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") {
				t.Fatalf("exclude %q taken", e.Path)
			}
		}
	})
}
