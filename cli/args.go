package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
)

// Flags go anywhere on the line, as docker's do. urfave/cli/v2 (Go's flag
// package underneath) stops at the first argument, so snap puts each
// command's flags first before urfave parses them, driven by the command's
// own flag definitions: which names exist and which take a value. The flags
// come out one per token with their values attached (--name=value, so a
// value that starts with '-' stays a value), combined short flags split as
// pflag splits them (-aq, -fv, -dewhat), then "--" and the positional
// arguments in their order.

// commandArgs names the commands whose arguments after the first N
// positionals are a container's command line, passed on untouched as docker
// does (`snap run IMG sh -c 'ls -l'`: -c belongs to sh).
var commandArgs = map[string]int{"run": 1, "create": 1, "exec": 1}

// flagKinds maps every name of every flag (long, short, aliases) to whether
// it takes a value.
type flagKinds map[string]bool

func kindsOf(flags []cli.Flag) flagKinds {
	k := flagKinds{}
	for _, f := range append(slices.Clip(flags), cli.HelpFlag) {
		v := true
		if tv, ok := f.(interface{ TakesValue() bool }); ok {
			v = tv.TakesValue()
		}
		for _, n := range f.Names() {
			k[n] = v
		}
	}
	return k
}

// reorderArgs rewrites os.Args-style args (args[0] the program) so that
// urfave/cli sees the global flags, the command, the command's flags, "--",
// and the positional arguments. Unknown commands and flags, and flags
// missing their value, are usage errors naming them.
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	global := kindsOf(app.Flags)
	out := []string{args[0]}
	rest := args[1:]
	// Global flags come before the command, as docker's do.
	for len(rest) > 0 && rest[0] != "--" && isFlag(rest[0]) {
		toks, n, err := normalizeFlag(global, rest[0], rest[1:])
		if err != nil {
			return nil, usageError{err}
		}
		out, rest = append(out, toks...), rest[1+n:]
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return out, nil
	}
	name := rest[0]
	if name == "help" || name == "h" {
		return append(append(out, name), rest[1:]...), nil
	}
	cmd := findCommand(app.Commands, name)
	if cmd == nil {
		q := "'" + name + "'"
		if quoteName(name) != name {
			q = quoteName(name)
		}
		return nil, usagef("%s is not a snap command; see 'snap --help'", q)
	}
	// A command with subcommands (`snap image inspect`): the flags are the
	// subcommand's.
	for len(rest) > 1 && len(cmd.Subcommands) > 0 {
		sub := findCommand(cmd.Subcommands, rest[1])
		if sub == nil {
			break
		}
		out, rest, cmd = append(out, rest[0]), rest[1:], sub
		name = rest[0]
	}
	flags, pos, err := splitFlags(kindsOf(cmd.Flags), rest[1:], commandArgs[cmd.Name])
	if err != nil {
		if _, ok := global[flagName(err)]; ok {
			err = fmt.Errorf("%w (global flags go before the command)", err)
		}
		return nil, usageError{fmt.Errorf("%s: %w", cmd.Name, err)}
	}
	out = append(append(out, name), flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out, nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// splitFlags separates a command's flags from its positional arguments.
// With rawAfter > 0, everything after that many positionals is positional.
func splitFlags(k flagKinds, args []string, rawAfter int) (flags, pos []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case rawAfter > 0 && len(pos) >= rawAfter:
			return flags, append(pos, args[i:]...), nil
		case a == "--":
			return flags, append(pos, args[i+1:]...), nil
		case !isFlag(a):
			pos = append(pos, a)
		default:
			toks, n, err := normalizeFlag(k, a, args[i+1:])
			if err != nil {
				return nil, nil, err
			}
			flags = append(flags, toks...)
			i += n
		}
	}
	return flags, pos, nil
}

// isFlag: "-" alone is an argument (stdin), as everywhere.
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagError names a flag snap could not take.
type flagError struct{ msg, flag string }

func (e flagError) Error() string { return e.msg }

func flagName(err error) string {
	if fe, ok := err.(flagError); ok {
		return fe.flag
	}
	return ""
}

// normalizeFlag reads the flag a (and its value from next when it takes one
// and a does not hold it) and returns urfave's tokens for it and how many
// of next it used.
func normalizeFlag(k flagKinds, a string, next []string) ([]string, int, error) {
	dashes := "-"
	if strings.HasPrefix(a, "--") {
		dashes = "--"
	}
	body := a[len(dashes):]
	if body == "" || body[0] == '-' || body[0] == '=' {
		return nil, 0, flagError{"bad flag syntax: " + quoteName(a), a}
	}
	name, val, hasVal := strings.Cut(body, "=")
	// A whole name: --long, -s, or Go's single-dash -long.
	if takesValue, ok := k[name]; ok {
		switch {
		case !takesValue:
			return []string{a}, 0, nil
		case hasVal:
			return []string{dashes + name + "=" + val}, 0, nil
		case len(next) == 0:
			return nil, 0, flagError{"flag needs an argument: " + a, name}
		}
		return []string{dashes + name + "=" + next[0]}, 1, nil
	}
	if dashes == "--" {
		return nil, 0, flagError{"unknown flag: --" + quoteName(name), name}
	}
	// Combined short flags, read as pflag reads them: booleans until one
	// takes a value, which takes the rest of the word (-ofile, -o=file) or
	// the next argument.
	var toks []string
	for j, r := range body {
		s := string(r)
		takesValue, ok := k[s]
		if !ok {
			return nil, 0, flagError{fmt.Sprintf("unknown shorthand flag: %s in %s", strconv.QuoteRune(r), quoteName(a)), s}
		}
		rest := body[j+len(s):]
		switch {
		case !takesValue && strings.HasPrefix(rest, "="):
			return append(toks, "-"+s+rest), 0, nil
		case !takesValue:
			toks = append(toks, "-"+s)
			continue
		case rest != "":
			return append(toks, "-"+s+"="+strings.TrimPrefix(rest, "=")), 0, nil
		case len(next) == 0:
			return nil, 0, flagError{fmt.Sprintf("flag needs an argument: %s in %s", strconv.QuoteRune(r), a), s}
		}
		return append(toks, "-"+s+"="+next[0]), 1, nil
	}
	return toks, 0, nil
}

// runApp runs the app on args with flags anywhere. Its errors print on one
// line: a name holding a newline cannot forge a second one.
func runApp(ctx context.Context, app *cli.App, args []string) error {
	args, err := reorderArgs(app, args)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if err != nil {
		return oneLineError{err}
	}
	return nil
}

type oneLineError struct{ error }

func (e oneLineError) Error() string { return escapeControls(e.error.Error()) }
func (e oneLineError) Unwrap() error { return e.error }

// escapeControls writes control characters as Go escapes (\n, \x1b).
func escapeControls(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quoteName quotes a user-given name, Go-style, only when it holds
// characters a terminal would misread (controls, invalid UTF-8); other names
// print as they are, as docker prints them.
func quoteName(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}
