// Package capture is snap's golden-image capture: the capture file that
// describes one (base, steps, exclude, generalize, verify, commit, tags,
// push), copying host files into a container's root, and the generalizing
// (sysprep) of a captured root.
package capture

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"snap/commit"
	"snap/internal/fdpath"
)

// MaxFileSize bounds a capture file: a real one is a few kilobytes, and
// YAML's aliases make a small file expensive enough without a big one.
const MaxFileSize = 1 << 20

// ErrFile is returned (wrapped) for a capture file snap does not take: bad
// YAML, an unknown key, a value of the wrong kind, an invalid reference,
// path or pattern. The message names the key and its line.
var ErrFile = errors.New("invalid capture file")

// Networks of the steps' containers.
const (
	NetworkNone = "none"
	NetworkHost = "host"
)

// File is a parsed capture file, variables substituted (see Parse).
type File struct {
	// Base is what the capture starts from: a local image, a registry
	// reference, or a container (docker://NAME, NAME).
	Base string
	// Network is the steps' network: "host" or "none" (the default).
	Network string
	// Vars are the variables' values: the file's defaults, overridden by
	// the values given to Parse. They are substituted as ${NAME} and are
	// the environment of every run step (RunEnv).
	Vars map[string]string
	// Undeclared names the given variables the file does not declare,
	// sorted: docker build warns about such build args, and so may the
	// caller; they are substituted all the same.
	Undeclared []string
	Steps      []Step
	Exclude    []Exclude
	Generalize bool
	// Verify holds run steps only, run in a fresh container of the result.
	Verify []Step
	Commit Commit
	// Tags are templates (text/template, see RenderTags); Push are
	// registry references, templates too (RenderPush).
	Tags []string
	Push []string
	// Version is the image's org.opencontainers.image.version.
	Version string
	// Dir is the capture file's directory: relative copy sources are
	// relative to it.
	Dir string
	// Digest is the sha256 of the file's bytes and its variables' values,
	// for provenance and to tell that nothing changed since the last
	// capture. It does not cover what copy steps read (SourcesDigest).
	Digest digest.Digest
}

// Commit is the file's commit section, docker commit's options.
type Commit struct {
	Author  string
	Message string
	// Changes are docker commit's -c instructions (CMD, ENV, EXPOSE, ...).
	Changes []string
	Labels  map[string]string
	// Squash makes one layer of all steps; otherwise each step that changes
	// the filesystem is its own (cached) layer.
	Squash bool
}

// Step is one step: exactly one of its fields is set.
type Step struct {
	// Run is a shell command (/bin/sh -c), run with the variables in its
	// environment on top of the image's.
	Run  string
	Copy *Copy
	// Env holds KEY=VALUE pairs, in the file's order.
	Env     []string
	Workdir string
	User    string
	// Line is the step's line in the file, for messages.
	Line int
}

// Copy is a copy step: host files into the container (see CopyInto).
type Copy struct {
	// Src is relative to the capture file's directory and stays inside it.
	Src string
	// Dst is an absolute path in the container; a trailing "/" (or an
	// existing directory) puts a file into it.
	Dst string
	// Owner is "USER[:GROUP]", names or numbers; "" is 0:0.
	Owner string
	// Mode, when set, is every copied file's and directory's permission
	// bits; otherwise the sources' are kept.
	Mode *fs.FileMode
}

// Exclude is a glob on container paths (path.Match, plus "**" for any
// number of directories) never committed.
type Exclude struct {
	Path string
	// Whiteout removes from the image what the base has at the path;
	// without it the base's copy stays and only changes are left out.
	Whiteout bool
}

// Kind names the step's kind: "run", "copy", "env", "workdir" or "user".
func (s Step) Kind() string {
	switch {
	case s.Copy != nil:
		return "copy"
	case s.Env != nil:
		return "env"
	case s.Workdir != "":
		return "workdir"
	case s.User != "":
		return "user"
	default:
		return "run"
	}
}

// Load reads and parses the capture file at name (see Parse). The file
// must be a regular file of at most MaxFileSize bytes.
func Load(name string, vars map[string]string) (*File, error) {
	data, err := fdpath.ReadRegular(name, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("capture file %s: %w", name, err)
	}
	f, err := Parse(data, filepath.Dir(name), vars)
	if err != nil {
		return nil, fmt.Errorf("capture file %s: %w", name, err)
	}
	return f, nil
}

// Parse parses a capture file. dir is the file's directory; vars are given
// values (-e, --build-arg) that override the file's defaults. Parsing is
// strict: an unknown key, a second document, a value of the wrong kind is
// an error naming the key and its line.
//
// ${NAME} of a declared or given variable is replaced by its value in base,
// every string of the steps, verify, commit, exclude, tags, push and
// version; any other ${X} or $X is left as is, for the shell (run steps
// have the variables in their environment too, so $NAME there is the
// same value).
func Parse(data []byte, dir string, vars map[string]string) (*File, error) {
	f, err := parse(data, dir, vars)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	return f, nil
}

func parse(data []byte, dir string, given map[string]string) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty")
		}
		return nil, oneLine(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, oneLine(err)
		}
		return nil, fmt.Errorf("line %d: a second document", more.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	fields, err := mapping(root, "capture file", "base", "network", "vars", "steps", "exclude",
		"generalize", "verify", "commit", "tags", "push", "version")
	if err != nil {
		return nil, err
	}
	f := &File{Dir: dir, Network: NetworkNone, Vars: map[string]string{}}

	// Variables first: everything else is substituted.
	if n := fields["vars"]; n != nil {
		m, err := stringMap(n, "vars")
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			if !varName.MatchString(k) {
				return nil, fmt.Errorf("line %d: vars: %q is not a variable name", n.Line, k)
			}
			f.Vars[k] = v
		}
	}
	for k, v := range given {
		if !varName.MatchString(k) {
			return nil, fmt.Errorf("variable %q: not a variable name", k)
		}
		if _, ok := f.Vars[k]; !ok {
			f.Undeclared = append(f.Undeclared, k)
		}
		f.Vars[k] = v
	}
	slices.Sort(f.Undeclared)
	sub := func(s string) string { return substitute(s, f.Vars) }

	n := fields["base"]
	if n == nil {
		return nil, errors.New("base: missing")
	}
	if f.Base, err = scalar(n, "base"); err != nil {
		return nil, err
	}
	if f.Base = sub(f.Base); strings.TrimSpace(f.Base) == "" {
		return nil, fmt.Errorf("line %d: base: empty", n.Line)
	}
	if n := fields["network"]; n != nil {
		if f.Network, err = scalar(n, "network"); err != nil {
			return nil, err
		}
		if f.Network != NetworkHost && f.Network != NetworkNone {
			return nil, fmt.Errorf("line %d: network: %q is neither %q nor %q", n.Line, f.Network, NetworkHost, NetworkNone)
		}
	}
	if n := fields["steps"]; n != nil {
		if f.Steps, err = steps(n, "steps", sub, false); err != nil {
			return nil, err
		}
	}
	if n := fields["verify"]; n != nil {
		if f.Verify, err = steps(n, "verify", sub, true); err != nil {
			return nil, err
		}
	}
	if n := fields["exclude"]; n != nil {
		if f.Exclude, err = excludes(n, sub); err != nil {
			return nil, err
		}
	}
	if n := fields["generalize"]; n != nil {
		if f.Generalize, err = boolean(n, "generalize"); err != nil {
			return nil, err
		}
	}
	if n := fields["commit"]; n != nil {
		if f.Commit, err = commitSection(n, sub); err != nil {
			return nil, err
		}
	}
	if n := fields["version"]; n != nil {
		if f.Version, err = scalar(n, "version"); err != nil {
			return nil, err
		}
		f.Version = sub(f.Version)
	}
	if n := fields["tags"]; n != nil {
		if f.Tags, err = stringList(n, "tags"); err != nil {
			return nil, err
		}
		for i, t := range f.Tags {
			f.Tags[i] = sub(t)
			if _, err := renderTag(f.Tags[i], sampleTagData(f.Vars), false); err != nil {
				return nil, fmt.Errorf("line %d: tags: %w", n.Content[i].Line, err)
			}
		}
	}
	if n := fields["push"]; n != nil {
		if f.Push, err = stringList(n, "push"); err != nil {
			return nil, err
		}
		for i, t := range f.Push {
			f.Push[i] = sub(t)
			if _, err := renderTag(f.Push[i], sampleTagData(f.Vars), true); err != nil {
				return nil, fmt.Errorf("line %d: push: %w", n.Content[i].Line, err)
			}
		}
	}
	f.Digest = fileDigest(data, f.Vars)
	return f, nil
}

// fileDigest is the sha256 of the file's bytes (length first, so no other
// split of the same bytes collides) and of the variables' values (JSON
// sorts a map's keys).
func fileDigest(data []byte, vars map[string]string) digest.Digest {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(data))
	h.Write(data)
	b, _ := json.Marshal(vars) // a map of strings always marshals
	h.Write(b)
	return digest.NewDigest(digest.SHA256, h)
}

// RunEnv is the variables as KEY=VALUE, sorted: the environment run steps
// get on top of the image's.
func (f *File) RunEnv() []string {
	env := make([]string, 0, len(f.Vars))
	for k, v := range f.Vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

var (
	varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	varRef  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// substitute replaces ${NAME} of the known variables; anything else stays
// for the shell.
func substitute(s string, vars map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// oneLine keeps a YAML error on the one line snap's errors get.
func oneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " "))
}

// resolve follows an alias to its anchor's node. Aliases are fine: every
// node of the schema is visited once per place it appears, and the schema
// is shallow, so an alias cannot multiply the work beyond the file's size
// times its depth.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// kindName names a node's kind for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// mapping returns a mapping node's values by key, refusing keys not in
// allowed and keys given twice.
func mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: %s: %s, not a mapping", n.Line, what, kindName(n))
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s: a key that is %s", k.Line, what, kindName(k))
		}
		if !slices.Contains(allowed, k.Value) {
			return nil, fmt.Errorf("line %d: %s: unknown key %q", k.Line, what, k.Value)
		}
		if _, dup := m[k.Value]; dup {
			return nil, fmt.Errorf("line %d: %s: key %q given twice", k.Line, what, k.Value)
		}
		m[k.Value] = v
	}
	return m, nil
}

// scalar is a scalar's text (null is ""): numbers and booleans as written,
// so "mode: 0644" and "VERSION: 3" mean what they look like.
func scalar(n *yaml.Node, what string) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: %s: %s, not a string", n.Line, what, kindName(n))
	}
	switch n.Tag {
	case "!!null":
		return "", nil
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp", "":
		return n.Value, nil
	}
	// !!binary would be taken as its base64, a local tag as nothing.
	return "", fmt.Errorf("line %d: %s: a value tagged %s", n.Line, what, n.Tag)
}

func boolean(n *yaml.Node, what string) (bool, error) {
	n = resolve(n)
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, fmt.Errorf("line %d: %s: not true or false", n.Line, what)
	}
	return b, nil
}

func stringList(n *yaml.Node, what string) ([]string, error) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s: %s, not a list", n.Line, what, kindName(n))
	}
	l := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := scalar(c, what)
		if err != nil {
			return nil, err
		}
		l = append(l, s)
	}
	return l, nil
}

// stringPairs is a mapping of scalars, as pairs in the file's order.
func stringPairs(n *yaml.Node, what string) ([][2]string, error) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: %s: %s, not a mapping", n.Line, what, kindName(n))
	}
	seen := map[string]bool{}
	var pairs [][2]string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := scalar(n.Content[i], what)
		if err != nil {
			return nil, err
		}
		if seen[k] {
			return nil, fmt.Errorf("line %d: %s: key %q given twice", n.Content[i].Line, what, k)
		}
		seen[k] = true
		v, err := scalar(n.Content[i+1], what+"."+k)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, [2]string{k, v})
	}
	return pairs, nil
}

func stringMap(n *yaml.Node, what string) (map[string]string, error) {
	pairs, err := stringPairs(n, what)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p[0]] = p[1]
	}
	return m, nil
}

var stepKeys = []string{"run", "copy", "env", "workdir", "user"}

// steps parses a list of steps; runOnly is verify's rule.
func steps(n *yaml.Node, what string, sub func(string) string, runOnly bool) ([]Step, error) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s: %s, not a list", n.Line, what, kindName(n))
	}
	var l []Step
	for i, c := range n.Content {
		c = resolve(c)
		name := fmt.Sprintf("%s: step %d", what, i+1)
		fields, err := mapping(c, name, stepKeys...)
		if err != nil {
			return nil, err
		}
		if len(fields) != 1 {
			return nil, fmt.Errorf("line %d: %s: needs exactly one of %s", c.Line, name, strings.Join(stepKeys, ", "))
		}
		s := Step{Line: c.Line}
		for k, v := range fields {
			if runOnly && k != "run" {
				return nil, fmt.Errorf("line %d: %s: %s: %s takes run steps only", v.Line, name, k, what)
			}
			if err := s.set(k, v, name+": "+k, sub); err != nil {
				return nil, err
			}
		}
		l = append(l, s)
	}
	return l, nil
}

// set parses the step's one key.
func (s *Step) set(key string, v *yaml.Node, what string, sub func(string) string) error {
	v = resolve(v)
	var err error
	switch key {
	case "run":
		if s.Run, err = scalar(v, what); err != nil {
			return err
		}
		if s.Run = sub(s.Run); strings.TrimSpace(s.Run) == "" {
			return fmt.Errorf("line %d: %s: empty", v.Line, what)
		}
	case "copy":
		s.Copy, err = copySpec(v, what, sub)
		return err
	case "env":
		var pairs [][2]string
		if v.Kind == yaml.MappingNode {
			if pairs, err = stringPairs(v, what); err != nil {
				return err
			}
		} else {
			kv, err := scalar(v, what)
			if err != nil {
				return err
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("line %d: %s: %q is not KEY=VALUE", v.Line, what, kv)
			}
			pairs = [][2]string{{k, val}}
		}
		if len(pairs) == 0 {
			return fmt.Errorf("line %d: %s: empty", v.Line, what)
		}
		s.Env = []string{}
		for _, p := range pairs {
			k := sub(p[0])
			if !envName(k) {
				return fmt.Errorf("line %d: %s: %q is not a variable name", v.Line, what, k)
			}
			s.Env = append(s.Env, k+"="+sub(p[1]))
		}
	case "workdir":
		if s.Workdir, err = scalar(v, what); err != nil {
			return err
		}
		if s.Workdir = sub(s.Workdir); s.Workdir == "" || !path.IsAbs(s.Workdir) {
			// The config's WorkingDir is absolute; a relative one would
			// mean docker's relative-to-the-previous rule, which a capture
			// file spells out instead.
			return fmt.Errorf("line %d: %s: %q is not an absolute path", v.Line, what, s.Workdir)
		}
	case "user":
		if s.User, err = scalar(v, what); err != nil {
			return err
		}
		if s.User = sub(s.User); s.User == "" {
			return fmt.Errorf("line %d: %s: empty", v.Line, what)
		}
	}
	return nil
}

// envName is what docker takes as an ENV key: anything without "=" or
// white space.
func envName(k string) bool {
	return k != "" && !strings.ContainsAny(k, "= \t\n\r\x00")
}

func copySpec(n *yaml.Node, what string, sub func(string) string) (*Copy, error) {
	fields, err := mapping(n, what, "src", "dst", "owner", "mode")
	if err != nil {
		return nil, err
	}
	c := &Copy{}
	for _, k := range []string{"src", "dst"} {
		v := fields[k]
		if v == nil {
			return nil, fmt.Errorf("line %d: %s: %s missing", n.Line, what, k)
		}
		s, err := scalar(v, what+"."+k)
		if err != nil {
			return nil, err
		}
		s = sub(s)
		if k == "src" {
			if err := checkSource(s); err != nil {
				return nil, fmt.Errorf("line %d: %s.src: %w", v.Line, what, err)
			}
			c.Src = s
		} else {
			if !path.IsAbs(s) {
				return nil, fmt.Errorf("line %d: %s.dst: %q is not an absolute path", v.Line, what, s)
			}
			c.Dst = s
		}
	}
	if v := fields["owner"]; v != nil {
		if c.Owner, err = scalar(v, what+".owner"); err != nil {
			return nil, err
		}
		c.Owner = sub(c.Owner)
		if err := checkOwner(c.Owner); err != nil {
			return nil, fmt.Errorf("line %d: %s.owner: %w", v.Line, what, err)
		}
	}
	if v := fields["mode"]; v != nil {
		s, err := scalar(v, what+".mode")
		if err != nil {
			return nil, err
		}
		m, err := parseMode(sub(s))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s.mode: %w", v.Line, what, err)
		}
		c.Mode = &m
	}
	return c, nil
}

// parseMode reads an octal mode ("0644", "644", "0o644") of permission,
// setuid, setgid and sticky bits.
func parseMode(s string) (fs.FileMode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" || v > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode (0000 to 7777)", s)
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// userName is what a passwd or group name may be (shadow-utils' rule, with
// upper case and a trailing $ as some systems allow).
var userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)

// checkOwner checks "USER[:GROUP]", each a number or a name.
func checkOwner(s string) error {
	u, g, hasGroup := strings.Cut(s, ":")
	ok := func(p string) bool {
		if _, err := strconv.ParseUint(p, 10, 31); err == nil {
			return true
		}
		return userName.MatchString(p)
	}
	if !ok(u) || (hasGroup && !ok(g)) {
		return fmt.Errorf("%q is not USER[:GROUP] (names or numbers)", s)
	}
	return nil
}

// checkSource refuses a source that could leave the capture file's
// directory by its name (symlinks are CopyInto's to refuse).
func checkSource(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if path.IsAbs(s) || filepath.IsAbs(s) {
		return fmt.Errorf("%q is absolute: sources are relative to the capture file", s)
	}
	if slices.Contains(strings.Split(filepath.ToSlash(s), "/"), "..") {
		return fmt.Errorf("%q leaves the capture file's directory", s)
	}
	return nil
}

func excludes(n *yaml.Node, sub func(string) string) ([]Exclude, error) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: exclude: %s, not a list", n.Line, kindName(n))
	}
	var l []Exclude
	for i, c := range n.Content {
		c = resolve(c)
		what := fmt.Sprintf("exclude: entry %d", i+1)
		var e Exclude
		if c.Kind == yaml.MappingNode {
			fields, err := mapping(c, what, "path", "whiteout")
			if err != nil {
				return nil, err
			}
			if fields["path"] == nil {
				return nil, fmt.Errorf("line %d: %s: path missing", c.Line, what)
			}
			if e.Path, err = scalar(fields["path"], what+".path"); err != nil {
				return nil, err
			}
			if v := fields["whiteout"]; v != nil {
				if e.Whiteout, err = boolean(v, what+".whiteout"); err != nil {
					return nil, err
				}
			}
		} else {
			var err error
			if e.Path, err = scalar(c, what); err != nil {
				return nil, err
			}
		}
		p, err := checkGlob(sub(e.Path))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", c.Line, what, err)
		}
		e.Path = p
		l = append(l, e)
	}
	return l, nil
}

// checkGlob checks an exclude pattern and returns it cleaned ("/a/b/" is
// "/a/b").
func checkGlob(p string) (string, error) {
	switch {
	case strings.HasPrefix(p, "!"):
		return "", fmt.Errorf("%q: exceptions (!) are not supported", p)
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("%q is not an absolute path", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return "", fmt.Errorf("%q has a .. component", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("%q excludes everything", p)
	}
	if _, err := path.Match(c, ""); err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	return c, nil
}

func commitSection(n *yaml.Node, sub func(string) string) (Commit, error) {
	var c Commit
	fields, err := mapping(n, "commit", "author", "message", "changes", "labels", "squash")
	if err != nil {
		return c, err
	}
	if v := fields["author"]; v != nil {
		if c.Author, err = scalar(v, "commit.author"); err != nil {
			return c, err
		}
		c.Author = sub(c.Author)
	}
	if v := fields["message"]; v != nil {
		if c.Message, err = scalar(v, "commit.message"); err != nil {
			return c, err
		}
		c.Message = sub(c.Message)
	}
	if v := fields["changes"]; v != nil {
		if c.Changes, err = stringList(v, "commit.changes"); err != nil {
			return c, err
		}
		for i := range c.Changes {
			c.Changes[i] = sub(c.Changes[i])
		}
		// The same check docker commit -c gets, now rather than after the
		// steps ran.
		if err := commit.ApplyChanges(&dockerspec.DockerOCIImageConfig{}, c.Changes); err != nil {
			return c, fmt.Errorf("line %d: commit.changes: %v", v.Line, err)
		}
	}
	if v := fields["labels"]; v != nil {
		pairs, err := stringPairs(v, "commit.labels")
		if err != nil {
			return c, err
		}
		c.Labels = make(map[string]string, len(pairs))
		for _, p := range pairs {
			k := sub(p[0])
			if k == "" {
				return c, fmt.Errorf("line %d: commit.labels: an empty key", v.Line)
			}
			c.Labels[k] = sub(p[1])
		}
	}
	if v := fields["squash"]; v != nil {
		if c.Squash, err = boolean(v, "commit.squash"); err != nil {
			return c, err
		}
	}
	return c, nil
}
