package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"snap/container"
	"snap/store"
)

// completeCommand is the hidden command the shell scripts call: snap
// __complete WORD... CUR prints, one a line, what CUR (the word under the
// cursor, maybe empty) can become after the WORDs typed before it. urfave's
// own --generate-bash-completion reads os.Args and knows nothing of flags
// given anywhere on the line, so snap answers from its own parse.
const completeCommand = "__complete"

// complete returns the candidates for cur after words (the words after
// "snap"). An empty answer lets the shell complete file names.
func complete(ctx context.Context, app *cli.App, words []string, cur string) []string {
	global := kindsOf(app.Flags)
	root := ""
	i := 0
	for ; i < len(words) && isFlag(words[i]) && words[i] != "--"; i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(words[i], "-"), "=")
		if global[name] && !hasVal && i+1 < len(words) {
			i++
			val, hasVal = words[i], true
		}
		if name == "root" && hasVal {
			root = val
		}
	}
	if i < len(words) && words[i] == "--" {
		i++
	}
	if i == len(words) && len(words) > 0 && global[flagKey(words[i-1])] && !strings.Contains(words[i-1], "=") {
		return nil // a global flag's value: files (--root DIR)
	}
	if i == len(words) {
		if isFlag(cur) {
			return flagNames(app.Flags, cur)
		}
		return commandNames(app.Commands, cur)
	}
	cmd := findCommand(app.Commands, words[i])
	if cmd == nil {
		return nil
	}
	rest := words[i+1:]
	if len(cmd.Subcommands) > 0 {
		if len(rest) == 0 {
			return commandNames(cmd.Subcommands, cur)
		}
		if cmd = findCommand(cmd.Subcommands, rest[0]); cmd == nil {
			return nil
		}
		rest = rest[1:]
	}
	kinds := kindsOf(cmd.Flags)
	var pos []string
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if raw := commandArgs[cmd.Name]; raw > 0 && len(pos) >= raw {
			return nil // the container's command line
		}
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case !isFlag(a):
			pos = append(pos, a)
		case kinds[flagKey(a)] && !strings.Contains(a, "="):
			if j+1 == len(rest) { // cur is this flag's value
				if flagKey(a) == "base" {
					return names(ctx, app, root, "image name", cur)
				}
				return nil
			}
			j++
		}
	}
	if raw := commandArgs[cmd.Name]; raw > 0 && len(pos) >= raw {
		return nil
	}
	if isFlag(cur) {
		return flagNames(cmd.Flags, cur)
	}
	what := argNames[cmd.Name]
	if len(what) == 0 {
		return nil
	}
	kind := what[min(len(pos), len(what)-1)]
	if cmd.Name == "inspect" {
		return append(names(ctx, app, root, "image name", cur), names(ctx, app, root, "container name", cur)...)
	}
	return names(ctx, app, root, kind, cur)
}

// flagKey is the name of the flag word a (-o, --out=x: "o", "out").
func flagKey(a string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return name
}

func commandNames(cmds []*cli.Command, cur string) []string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden && strings.HasPrefix(c.Name, cur) {
			out = append(out, c.Name)
		}
	}
	return out
}

func flagNames(flags []cli.Flag, cur string) []string {
	var out []string
	for _, f := range append(slices.Clip(flags), cli.HelpFlag) {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		for _, n := range f.Names() {
			d := "--" + n
			if len(n) == 1 {
				d = "-" + n
			}
			if strings.HasPrefix(d, cur) {
				out = append(out, d)
			}
		}
	}
	return out
}

// names lists the store's images or containers whose names start with cur.
// A store that does not exist yet is not made for it.
func names(ctx context.Context, app *cli.App, root, kind, cur string) []string {
	if root == "" {
		root = os.Getenv("SNAP_ROOT")
	}
	if root == "" {
		root = defaultRoot()
	}
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	st, err := store.OpenContext(ctx, root)
	if err != nil {
		return nil
	}
	var out []string
	add := func(n string) {
		if strings.HasPrefix(n, cur) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	switch kind {
	case "image name":
		imgs, err := st.Images()
		if err != nil {
			return nil
		}
		for _, img := range imgs {
			for _, t := range img.Tags {
				add(t)
			}
		}
	case "container name":
		all, err := container.New(st).List()
		if err != nil {
			return nil
		}
		for _, m := range all {
			add(m.Name)
		}
	}
	return out
}

// Completion scripts: each asks snap (the one the user typed, so that
// /usr/local/bin/snap completes even where another snap comes first on
// PATH) and falls back to file names when snap has nothing to offer.
const (
	bashCompletion = `# bash completion for snap (the container image commit engine)
_snap() {
	local line=${COMP_LINE:0:COMP_POINT} cur=
	local -a words
	read -r -a words <<<"$line"
	if [[ $line != *[[:space:]] && ${#words[@]} -gt 1 ]]; then
		cur=${words[${#words[@]}-1]}
		unset 'words[${#words[@]}-1]'
	fi
	local bin=${words[0]}
	if [[ $(type -t "$bin") == alias && ${BASH_ALIASES[$bin]} != *[[:space:]]* ]]; then
		bin=${BASH_ALIASES[$bin]} # alias snap=/usr/local/bin/snap
	fi
	local IFS=$'\n'
	COMPREPLY=($(command "$bin" __complete "${words[@]:1}" "$cur" 2>/dev/null))
	# bash replaces only what follows the last ':' or '=' (COMP_WORDBREAKS).
	local pre=${cur%"${cur##*[:=]}"}
	if [[ -n $pre ]]; then
		COMPREPLY=("${COMPREPLY[@]#"$pre"}")
	fi
}
complete -o default -F _snap snap
`
	zshCompletion = `#compdef snap
# zsh completion for snap (the container image commit engine)
local -a c
c=("${(@f)$(${(Q)words[1]} __complete "${(@Q)words[2,CURRENT-1]}" "${(Q)words[CURRENT]}" 2>/dev/null)}")
if [[ -n ${c[1]} ]]; then
	compadd -a c
else
	_files
fi
`
	fishCompletion = `# fish completion for snap (the container image commit engine)
function __snap_complete
	set -l words (commandline -opc)
	set -l bin $words[1]
	set -e words[1]
	set -l c (command $bin __complete $words (commandline -ct) 2>/dev/null)
	test (count $c) -gt 0; or return 1
	printf '%s\n' $c
end
complete -c snap -f -n '__snap_complete >/dev/null' -a '(__snap_complete)'
`
)

func completionCommand() *cli.Command {
	scripts := map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}
	return &cli.Command{
		Name: "completion",
		// Hidden, so that snap com<TAB> is commit: make install puts the
		// scripts in place, and the README names this command.
		Hidden:    true,
		Usage:     "print the shell completion script for bash, zsh or fish",
		UsageText: "snap completion bash|zsh|fish   (make install puts them where the shells look)",
		Action: func(c *cli.Context) error {
			s, ok := scripts[c.Args().First()]
			if c.NArg() != 1 || !ok {
				return usagef("completion: want one of bash, zsh, fish")
			}
			_, err := io.WriteString(c.App.Writer, s)
			return err
		},
	}
}

// manCommand prints snap(1), made from the commands and flags themselves.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "__man",
		Hidden: true,
		Action: func(c *cli.Context) error {
			// The page is the same whoever builds it, not the builder's home.
			for _, f := range c.App.Flags {
				if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "root" {
					sf.DefaultText = "/var/lib/snap as root, else $XDG_DATA_HOME/snap or ~/.local/share/snap"
				}
			}
			m, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = io.WriteString(c.App.Writer, m+manTail)
			return err
		},
	}
}

const manTail = `
.SH ENVIRONMENT
.TP
\fBSNAP_ROOT\fP
the image store, as \fB--root\fP
.TP
\fBSOURCE_DATE_EPOCH\fP
created time and mtime clamp of commits and layers, as \fB--source-date-epoch\fP

.SH SHELL COMPLETION
\fBsnap completion bash\fP (or \fBzsh\fP, \fBfish\fP) prints the script that make install puts where the shell looks.

.SH SEE ALSO
\fBdocker-commit\fP(1), \fBumoci\fP(1), \fBskopeo\fP(1)
`
