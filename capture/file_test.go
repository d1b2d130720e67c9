package capture

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

const fullFile = `
base: localhost:5000/base/debian:${DEBIAN}
network: host
vars:
  DEBIAN: "12"
  WHO: ops
steps:
  - run: echo ${WHO} $HOME ${UNKNOWN}
  - copy: {src: files/nginx.conf, dst: /etc/nginx/, owner: "www-data:0", mode: 0644}
  - env: MODE=${WHO}
  - env: {A: "1", B: two}
  - workdir: /srv/${WHO}
  - user: ${WHO}
exclude:
  - /var/cache/junk/**
  - {path: /etc/motd, whiteout: true}
  - /opt/${WHO}/
generalize: true
verify:
  - run: test -f /etc/nginx/nginx.conf
commit:
  author: ${WHO} <ops@example.com>
  message: golden ${DEBIAN}
  changes: ['CMD ["nginx", "-g", "daemon off;"]', 'EXPOSE 80']
  labels: {team: "${WHO}"}
  squash: true
tags:
  - "golden/web:{{.Date}}-{{.BaseDigest}}"
  - golden/web:${DEBIAN}
  - "golden/web:{{.Vars.WHO}}"
push:
  - localhost:5000/golden/web
version: "1.${DEBIAN}"
`

func TestParseFull(t *testing.T) {
	f, err := Parse([]byte(fullFile), "/ctx", map[string]string{"WHO": "web", "EXTRA": "x"})
	if err != nil {
		t.Fatal(err)
	}
	mode := fs.FileMode(0o644)
	want := &File{
		Base:       "localhost:5000/base/debian:12",
		Network:    "host",
		Vars:       map[string]string{"DEBIAN": "12", "WHO": "web", "EXTRA": "x"},
		Undeclared: []string{"EXTRA"},
		Steps: []Step{
			{Run: "echo web $HOME ${UNKNOWN}", Line: 8},
			{Copy: &Copy{Src: "files/nginx.conf", Dst: "/etc/nginx/", Owner: "www-data:0", Mode: &mode}, Line: 9},
			{Env: []string{"MODE=web"}, Line: 10},
			{Env: []string{"A=1", "B=two"}, Line: 11},
			{Workdir: "/srv/web", Line: 12},
			{User: "web", Line: 13},
		},
		Exclude:    []Exclude{{Path: "/var/cache/junk/**"}, {Path: "/etc/motd", Whiteout: true}, {Path: "/opt/web"}},
		Generalize: true,
		Verify:     []Step{{Run: "test -f /etc/nginx/nginx.conf", Line: 20}},
		Commit: Commit{
			Author:  "web <ops@example.com>",
			Message: "golden 12",
			Changes: []string{`CMD ["nginx", "-g", "daemon off;"]`, "EXPOSE 80"},
			Labels:  map[string]string{"team": "web"},
			Squash:  true,
		},
		Tags:    []string{"golden/web:{{.Date}}-{{.BaseDigest}}", "golden/web:12", "golden/web:{{.Vars.WHO}}"},
		Push:    []string{"localhost:5000/golden/web"},
		Version: "1.12",
		Dir:     "/ctx",
	}
	want.Digest = f.Digest
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got  %+v\nwant %+v", f, want)
	}
	if got := f.RunEnv(); !reflect.DeepEqual(got, []string{"DEBIAN=12", "EXTRA=x", "WHO=web"}) {
		t.Errorf("RunEnv = %q", got)
	}
	kinds := []string{}
	for _, s := range f.Steps {
		kinds = append(kinds, s.Kind())
	}
	if got := strings.Join(kinds, " "); got != "run copy env env workdir user" {
		t.Errorf("kinds = %s", got)
	}
	tags, err := f.RenderTags(TagData{
		Time:       time.Date(2026, 11, 23, 23, 59, 0, 0, time.FixedZone("x", -3600)),
		BaseDigest: digest.Digest("sha256:" + strings.Repeat("ab", 32)),
		BaseName:   f.Base,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"golden/web:2026-11-24-abababababab", "golden/web:12", "golden/web:web"}; !reflect.DeepEqual(tags, want) {
		t.Errorf("tags = %q, want %q", tags, want)
	}
	push, err := f.RenderPush(TagData{})
	if err != nil || !reflect.DeepEqual(push, []string{"localhost:5000/golden/web"}) {
		t.Errorf("push = %q, %v", push, err)
	}
}

func TestParseDefaults(t *testing.T) {
	f, err := Parse([]byte("base: debian:12\n"), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Network != NetworkNone || f.Generalize || len(f.Steps) != 0 || len(f.Vars) != 0 || f.Commit.Squash {
		t.Errorf("defaults: %+v", f)
	}
	// mode: 0644 unquoted is octal as written, not YAML 1.2's decimal 644
	// nor YAML 1.1's 420.
	f, err = Parse([]byte("base: b\nsteps:\n- copy: {src: a, dst: /a, mode: 0755}\n- copy: {src: a, dst: /a, mode: \"4755\"}\n"), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := *f.Steps[0].Copy.Mode; m != 0o755 {
		t.Errorf("mode 0755 = %v", m)
	}
	if m := *f.Steps[1].Copy.Mode; m != 0o755|fs.ModeSetuid {
		t.Errorf("mode 4755 = %v", m)
	}
}

// TestParseRefuses holds each refusal to its message: the key, its line
// (or the step's number), and ErrFile.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"unknown top key", "base: b\nbsae: c\n", `line 2: capture file: unknown key "bsae"`},
		{"unknown commit key", "base: b\ncommit:\n  autor: x\n", `line 3: commit: unknown key "autor"`},
		{"unknown copy key", "base: b\nsteps:\n- copy: {src: a, dst: /a, chmod: 1}\n", `line 3: steps: step 1: copy: unknown key "chmod"`},
		{"unknown exclude key", "base: b\nexclude:\n- {path: /a, wh: true}\n", `exclude: entry 1: unknown key "wh"`},
		{"duplicate key", "base: b\nbase: c\n", `line 2: capture file: key "base" given twice`},
		{"no base", "network: host\n", "base: missing"},
		{"empty base", "base: ''\n", "base: empty"},
		{"empty base var", "base: ${B}\nvars: {B: ''}\n", "base: empty"},
		{"not a mapping", "- a\n", "capture file: a list, not a mapping"},
		{"empty file", "", "empty"},
		{"two documents", "base: a\n---\nbase: b\n", "line 2: a second document"},
		{"bad yaml", "base: [\n", "did not find expected"},
		{"network", "base: b\nnetwork: bridge\n", `line 2: network: "bridge" is neither`},
		{"two kinds", "base: b\nsteps:\n- run: a\n  user: b\n", "line 3: steps: step 1: needs exactly one of"},
		{"no kind", "base: b\nsteps:\n- run: a\n- {}\n", "line 4: steps: step 2: needs exactly one of"},
		{"unknown kind", "base: b\nsteps:\n- add: a\n", `steps: step 1: unknown key "add"`},
		{"step not a map", "base: b\nsteps:\n- echo hi\n", "steps: step 1: a scalar, not a mapping"},
		{"empty run", "base: b\nsteps:\n- run: ''\n", "steps: step 1: run: empty"},
		{"verify copy", "base: b\nverify:\n- copy: {src: a, dst: /a}\n", "verify: step 1: copy: verify takes run steps only"},
		{"env no =", "base: b\nsteps:\n- env: FOO\n", `"FOO" is not KEY=VALUE`},
		{"env bad key", "base: b\nsteps:\n- env: {'A B': 1}\n", `"A B" is not a variable name`},
		{"relative workdir", "base: b\nsteps:\n- workdir: srv\n", `"srv" is not an absolute path`},
		{"copy no dst", "base: b\nsteps:\n- copy: {src: a}\n", "copy: dst missing"},
		{"copy relative dst", "base: b\nsteps:\n- copy: {src: a, dst: b}\n", `"b" is not an absolute path`},
		{"copy abs src", "base: b\nsteps:\n- copy: {src: /etc/passwd, dst: /a}\n", "is absolute"},
		{"copy dotdot src", "base: b\nsteps:\n- copy: {src: a/../../x, dst: /a}\n", "leaves the capture file's directory"},
		{"copy dotdot by var", "base: b\nvars: {D: ..}\nsteps:\n- copy: {src: '${D}/x', dst: /a}\n", "leaves the capture file's directory"},
		{"mode not octal", "base: b\nsteps:\n- copy: {src: a, dst: /a, mode: 0689}\n", `copy.mode: "0689" is not an octal mode`},
		{"mode too big", "base: b\nsteps:\n- copy: {src: a, dst: /a, mode: 17777}\n", "is not an octal mode"},
		{"owner", "base: b\nsteps:\n- copy: {src: a, dst: /a, owner: 'a b'}\n", "copy.owner: \"a b\" is not USER[:GROUP]"},
		{"owner empty group", "base: b\nsteps:\n- copy: {src: a, dst: /a, owner: '0:'}\n", "is not USER[:GROUP]"},
		{"exclude relative", "base: b\nexclude: [var/log]\n", `exclude: entry 1: "var/log" is not an absolute path`},
		{"exclude dotdot", "base: b\nexclude: [/var/../etc]\n", "has a .. component"},
		{"exclude negation", "base: b\nexclude: ['!/var/log']\n", "exceptions (!) are not supported"},
		{"exclude bad glob", "base: b\nexclude: ['/var/[']\n", "syntax error in pattern"},
		{"exclude root", "base: b\nexclude: [/]\n", "excludes everything"},
		{"generalize", "base: b\ngeneralize: yes please\n", "generalize: not true or false"},
		{"tag", "base: b\ntags: ['Golden:1']\n", `line 2: tags: reference "Golden:1"`},
		{"tag template", "base: b\ntags: ['a:{{.Nope}}']\n", "line 2: tags:"},
		{"tag var missing", "base: b\ntags: ['a:{{.Vars.X}}']\n", `map has no entry for key "X"`},
		{"tag template syntax", "base: b\ntags: ['a:{{']\n", "line 2: tags:"},
		{"tag digest", "base: b\ntags: ['a@sha256:" + strings.Repeat("0", 64) + "']\n", "a tag cannot carry a digest"},
		{"push", "base: b\npush: ['localhost:5000/UP']\n", "line 2: push: reference"},
		{"changes", "base: b\ncommit: {changes: ['FROM x']}\n", "line 2: commit.changes:"},
		{"tags not a list", "base: b\ntags: a:1\n", "tags: a scalar, not a list"},
		{"vars name", "base: b\nvars: {'A-B': 1}\n", `vars: "A-B" is not a variable name`},
		{"vars list", "base: b\nvars: [a]\n", "vars: a list, not a mapping"},
		{"merge key", "base: b\ncommit: &c {author: a}\nx: *c\n", `unknown key "x"`},
		{"binary", "base: !!binary aGk=\n", "line 1: base: a value tagged !!binary"},
		{"local tag", "base: b\nsteps:\n- run: !shell ls\n", "a value tagged !shell"},
		{"too big", "base: b\n#" + strings.Repeat("x", MaxFileSize), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), ".", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrFile) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("err is not one line: %q", err)
			}
		})
	}
	if _, err := Parse([]byte("base: b\n"), ".", map[string]string{"1X": "a"}); err == nil {
		t.Error("a given variable named 1X was taken")
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"A": "1", "B_2": "${A}", "E": ""}
	for in, want := range map[string]string{
		"${A}":          "1",
		"$A ${A}":       "$A 1",
		"${B_2}":        "${A}", // one pass: a value is not substituted again
		"${C} ${A":      "${C} ${A",
		"x${E}y":        "xy",
		"${A}${A}$${A}": "11$1",
		"no vars":       "no vars",
	} {
		if got := substitute(in, vars); got != want {
			t.Errorf("substitute(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFileDigest(t *testing.T) {
	file := []byte("base: b\nvars: {V: a}\nsteps:\n- run: echo ${V}\n")
	parse := func(data []byte, vars map[string]string) digest.Digest {
		t.Helper()
		f, err := Parse(data, ".", vars)
		if err != nil {
			t.Fatal(err)
		}
		return f.Digest
	}
	d := parse(file, nil)
	if d != parse(file, nil) {
		t.Error("the same file and vars give two digests")
	}
	if d != parse(file, map[string]string{"V": "a"}) {
		t.Error("overriding a variable with its default changed the digest")
	}
	if d == parse(file, map[string]string{"V": "b"}) {
		t.Error("another variable value, the same digest")
	}
	if d == parse(append(file, '\n'), nil) {
		t.Error("other bytes, the same digest")
	}
}

func TestRenderTagsChecksResults(t *testing.T) {
	f, err := Parse([]byte("base: b\ntags: ['golden:{{.BaseName}}']\npush: ['localhost:5000/g:{{.BaseName}}']\n"), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.RenderTags(TagData{BaseName: "a/b"}); err == nil {
		t.Error("a tag with / rendered")
	}
	if _, err := f.RenderPush(TagData{BaseName: "a b"}); err == nil {
		t.Error("a push reference with a space rendered")
	}
	got, err := f.RenderTags(TagData{BaseName: "v1"})
	if err != nil || !reflect.DeepEqual(got, []string{"golden:v1"}) {
		t.Errorf("tags = %q, %v", got, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "capture.yaml")
	if err := os.WriteFile(name, []byte("base: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Dir != dir {
		t.Errorf("Dir = %s, want %s", f.Dir, dir)
	}
	if _, err := Load(dir, nil); err == nil {
		t.Error("a directory loaded as a capture file")
	}
}
