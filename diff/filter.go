package diff

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Action is what a Rule does to the paths it covers.
type Action int

const (
	// Omit keeps a path out of the layer: an added or changed file never
	// enters it, a deletion is not recorded (the lower's file stays as the
	// base has it), a directory goes with everything beneath it.
	Omit Action = iota
	// Truncate writes a regular file as an empty one, its mode, owner,
	// times and xattrs kept (a log emptied, a machine ID reset); its
	// content is never read. Anything else (directory, symlink, device,
	// fifo) is written as it is, and a deletion is recorded as usual.
	Truncate
)

func (a Action) String() string {
	switch a {
	case Omit:
		return "omit"
	case Truncate:
		return "truncate"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Rule applies an Action to the paths Pattern covers. Pattern is a glob on
// absolute container paths: `*`, `?` and `[...]` within one segment (as
// path.Match), `**` as a whole segment for any number of segments. A
// pattern that matches a directory covers everything beneath it; a trailing
// `/**` matches at least one segment, so `/a/**` covers what is inside /a
// but not /a itself.
type Rule struct {
	Pattern string
	Action  Action
}

// ErrPattern is wrapped by CompileRules' error for a pattern it refuses.
var ErrPattern = errors.New("bad path pattern")

// Rules is a compiled set of Rules; the zero value and nil match nothing.
type Rules struct {
	rules []compiled
}

type compiled struct {
	segs   []string
	action Action
}

// CompileRules checks and compiles rules. It refuses, naming the pattern:
// an empty pattern, a relative one, `!` negation (a rule only ever takes
// paths out), `.`, `..` or empty segments, and malformed brackets.
func CompileRules(rules []Rule) (*Rules, error) {
	out := &Rules{}
	for _, r := range rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, err
		}
		out.rules = append(out.rules, c)
	}
	return out, nil
}

func compileRule(r Rule) (compiled, error) {
	p := r.Pattern
	bad := func(why string) (compiled, error) {
		return compiled{}, fmt.Errorf("%w %q: %s", ErrPattern, p, why)
	}
	switch {
	case r.Action != Omit && r.Action != Truncate:
		return bad(fmt.Sprintf("unknown action %d", int(r.Action)))
	case p == "":
		return bad("empty")
	case strings.HasPrefix(p, "!"):
		return bad("negation is not supported")
	case !strings.HasPrefix(p, "/"):
		return bad("not an absolute path")
	}
	rest := strings.TrimSuffix(p[1:], "/")
	if rest == "" {
		return bad("names the root")
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		switch s {
		case "":
			return bad("empty path segment")
		case ".", "..":
			return bad("a " + s + " segment")
		case "**":
			continue
		}
		// path.Match checks the whole pattern's syntax whatever the name.
		if _, err := path.Match(s, ""); err != nil {
			return bad("malformed glob segment " + s)
		}
	}
	for i, s := range segs {
		segs[i] = shellClass(s)
	}
	return compiled{segs: segs, action: r.Action}, nil
}

// shellClass writes a shell's negated class, [!...], as path.Match's [^...].
func shellClass(seg string) string {
	b := []byte(seg)
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '[':
			if i+1 < len(b) && b[i+1] == '!' {
				b[i+1] = '^'
			}
			for i++; i < len(b) && b[i] != ']'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		}
	}
	return string(b)
}

// Len is the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// Match says what the rules do to p, an absolute or root-relative
// slash-separated path: covered is false when no rule covers it. When
// several rules cover a path, Omit wins: nothing a rule keeps out enters.
func (r *Rules) Match(p string) (action Action, covered bool) {
	if r.Len() == 0 {
		return 0, false
	}
	p = strings.Trim(p, "/")
	if p == "" {
		return 0, false
	}
	segs := strings.Split(p, "/")
	for _, c := range r.rules {
		if c.covers(segs) {
			if c.action == Omit {
				return Omit, true
			}
			action, covered = c.action, true
		}
	}
	return action, covered
}

// covers: the pattern matches the path or one of its ancestors.
func (c compiled) covers(segs []string) bool {
	for n := 1; n <= len(segs); n++ {
		if matchSegs(c.segs, segs[:n]) {
			return true
		}
	}
	return false
}

// matchSegs matches pattern segments against path segments; `**` takes any
// number of segments, at least one when it ends the pattern. It is a table
// over (pattern, path) positions, so a pattern of many `**` costs
// len(pat)*len(segs), never an exponential backtrack.
func matchSegs(pat, segs []string) bool {
	// ok[j]: pat[i:] matches segs[j:], for the i of the loop; next: i+1.
	next := make([]bool, len(segs)+1)
	ok := make([]bool, len(segs)+1)
	next[len(segs)] = true // the empty pattern matches the empty path
	for i := len(pat) - 1; i >= 0; i-- {
		for j := len(segs); j >= 0; j-- {
			switch {
			case pat[i] == "**" && i == len(pat)-1:
				ok[j] = j < len(segs)
			case pat[i] == "**":
				ok[j] = next[j] || (j < len(segs) && ok[j+1])
			case j == len(segs):
				ok[j] = false
			default:
				m, _ := path.Match(pat[i], segs[j])
				ok[j] = m && next[j+1]
			}
		}
		next, ok = ok, next
	}
	return next[0]
}

// Filter applies rules to the changes of w. With no rules it returns w
// itself, so the layer is byte for byte the one w writes.
//
// The filtered walker is a Merger (a `docker diff` listing, filtered the
// same way) when w is one: what the commit leaves out is not listed. It is
// never a Squasher, whatever w is: w's whole filesystem includes the base's
// files, and filtering it would drop what the base holds under an omitted
// path, where a squash must be the filtered commit flattened onto the base
// (flatten the filtered layer instead).
//
// What a filter cannot do is bring back a lower's entry that an opaque
// directory or a deleted directory hides: the directory's marker covers
// its whole subtree, whatever a rule says of a path beneath it.
func Filter(w Walker, r *Rules) Walker {
	if r.Len() == 0 {
		return w
	}
	f := filtered{w: w, r: r}
	if m, ok := w.(interface{ Merged() Walker }); ok {
		return filteredMerger{filtered: f, m: m}
	}
	return f
}

type filtered struct {
	w Walker
	r *Rules
}

type filteredMerger struct {
	filtered
	m interface{ Merged() Walker }
}

func (f filteredMerger) Merged() Walker { return filtered{w: f.m.Merged(), r: f.r} }

func (f filtered) Walk(ctx context.Context, fn func(Change) error) error {
	// A directory the walker yields only to carry a change beneath it
	// (carrier) is held back until something beneath it passes the rules:
	// an omitted change must not leave its parents in the layer.
	var held []Change
	return f.w.Walk(ctx, func(c Change) error {
		for len(held) > 0 && !strings.HasPrefix(c.Path, held[len(held)-1].Path+"/") {
			held = held[:len(held)-1]
		}
		action, covered := f.r.Match(c.Path)
		if covered && action == Omit {
			return nil
		}
		if c.carrier {
			held = append(held, c)
			return nil
		}
		if covered && action == Truncate && c.Kind != Deleted && c.Info != nil && c.Info.Mode().IsRegular() {
			c.Empty = true
		}
		for _, h := range held {
			if err := fn(h); err != nil {
				return err
			}
		}
		held = held[:0]
		return fn(c)
	})
}
