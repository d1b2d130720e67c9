package cli

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parsed is what a command's action saw: its positional arguments and the
// flags that were set, each as name=value (slices joined with |).
type parsed struct {
	cmd  string
	args []string
	set  []string
}

// parseOnly runs snap's real command line (the reordering, then urfave's
// parsing, with the real flag definitions) with every action replaced by a
// recorder: no store, no container, no root check.
func parseOnly(t *testing.T, args ...string) (parsed, error) {
	t.Helper()
	var got parsed
	app := App(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range app.Commands {
		c.Before = nil
		c.Action = func(c *cli.Context) error {
			got.cmd, got.args = c.Command.Name, c.Args().Slice()
			for _, f := range c.Command.Flags {
				name := f.Names()[0]
				if !c.IsSet(name) || name == "help" {
					continue
				}
				v := fmt.Sprint(c.Value(name))
				if s, ok := c.Value(name).(cli.StringSlice); ok {
					v = strings.Join(s.Value(), "|")
				}
				got.set = append(got.set, name+"="+v)
			}
			return nil
		}
	}
	err := runApp(t.Context(), app, append([]string{"snap"}, args...))
	return got, err
}

func TestFlagsAnywhere(t *testing.T) {
	tests := []struct {
		line string   // for the test's name
		args []string // as the shell passes them
		cmd  string
		pos  []string
		set  []string // sorted by the command's flag order
	}{
		// the forms
		{"commit docker://c golden:1 --to-docker", []string{"commit", "docker://c", "golden:1", "--to-docker"},
			"commit", []string{"docker://c", "golden:1"}, []string{"to-docker=true"}},
		{"import f.tar x:1 -m msg", []string{"import", "f.tar", "x:1", "-m", "msg"},
			"import", []string{"f.tar", "x:1"}, []string{"message=msg"}},
		{"save -o f x:1 --format oci-archive", []string{"save", "-o", "f", "x:1", "--format", "oci-archive"},
			"save", []string{"x:1"}, []string{"output=f", "format=oci-archive"}},
		{"ps -aq", []string{"ps", "-aq"}, "ps", nil, []string{"all=true", "quiet=true"}},
		{"rm -fv c1 c2", []string{"rm", "-fv", "c1", "c2"}, "rm", []string{"c1", "c2"}, []string{"force=true", "volumes=true"}},
		// the README's forms
		{"commit -a A -m M build golden:1", []string{"commit", "-a", "Ops <ops@example.com>", "-m", "golden v1", "build", "golden:1"},
			"commit", []string{"build", "golden:1"}, []string{"author=Ops <ops@example.com>", "message=golden v1"}},
		{"commit -m M --base golden:1 dir:///srv/build golden:2", []string{"commit", "-m", "golden v2", "--base", "golden:1", "dir:///srv/build", "golden:2"},
			"commit", []string{"dir:///srv/build", "golden:2"}, []string{"message=golden v2", "base=golden:1"}},
		{"history -H=false golden:1", []string{"history", "-H=false", "golden:1"}, "history", []string{"golden:1"}, []string{"human=false"}},
		{"load -i golden.tar", []string{"load", "-i", "golden.tar"}, "load", nil, []string{"input=golden.tar"}},
		{"layer --upper u -o out --compression zstd", []string{"layer", "--upper", "u", "-o", "out", "--compression", "zstd"},
			"layer", nil, []string{"upper=u", "output=out", "compression=zstd"}},
		// flags before, between and after
		{"commit -m between", []string{"commit", "c", "-m", "msg", "x:1"}, "commit", []string{"c", "x:1"}, []string{"message=msg"}},
		{"commit -c twice, around", []string{"commit", "-c", `CMD ["a","b"]`, "c", "x:1", "-c", "ENV A=1,2"},
			"commit", []string{"c", "x:1"}, []string{`change=CMD ["a","b"]|ENV A=1,2`}},
		{"commit -p=false after", []string{"commit", "c", "x:1", "-p=false"}, "commit", []string{"c", "x:1"}, []string{"pause=false"}},
		{"commit --pause=false", []string{"commit", "--pause=false", "c"}, "commit", []string{"c"}, []string{"pause=false"}},
		// --flag=value, -fvalue, -f=value, values that look like flags
		{"--message=value", []string{"commit", "c", "--message=a=b"}, "commit", []string{"c"}, []string{"message=a=b"}},
		{"-mvalue", []string{"commit", "c", "-mhello"}, "commit", []string{"c"}, []string{"message=hello"}},
		{"-m=value", []string{"commit", "c", "-m=hello"}, "commit", []string{"c"}, []string{"message=hello"}},
		{"-m -dash", []string{"commit", "c", "-m", "-p", "x:1"}, "commit", []string{"c", "x:1"}, []string{"message=-p"}},
		{"-m --", []string{"commit", "c", "-m", "--", "x:1"}, "commit", []string{"c", "x:1"}, []string{"message=--"}},
		{"-m empty", []string{"commit", "c", "-m", "", "x:1"}, "commit", []string{"c", "x:1"}, []string{"message="}},
		{"combined bool then value", []string{"ps", "-qa"}, "ps", nil, []string{"all=true", "quiet=true"}},
		{"history -qH=false", []string{"history", "img", "-qH=false"}, "history", []string{"img"}, []string{"human=false", "quiet=true"}},
		{"stop -t -1", []string{"stop", "c", "-t", "-1"}, "stop", []string{"c"}, []string{"time=-1"}},
		{"Go's single-dash long", []string{"run", "-rm", "img"}, "run", []string{"img"}, []string{"rm=true"}},
		// -- ends the flags; "-" is an argument
		{"rmi -- -x", []string{"rmi", "--", "-x", "--nope"}, "rmi", []string{"-x", "--nope"}, nil},
		{"import - x:1 -m", []string{"import", "-", "x:1", "-m", "from stdin"}, "import", []string{"-", "x:1"}, []string{"message=from stdin"}},
		{"commit -- c -m", []string{"commit", "-m", "m", "--", "c", "-m"}, "commit", []string{"c", "-m"}, []string{"message=m"}},
		// run, create, exec: the container's command is left as it is
		{"run img sh -c 'echo -n x'", []string{"run", "img", "sh", "-c", "echo -n x"}, "run", []string{"img", "sh", "-c", "echo -n x"}, nil},
		{"run -d --rm -de A=1 img sh -c", []string{"run", "--rm", "-de", "A=1", "img", "sh", "-c", "ls -l", "--rm"},
			"run", []string{"img", "sh", "-c", "ls -l", "--rm"}, []string{"env=A=1", "rm=true", "detach=true"}},
		{"run --name n -- img ls", []string{"run", "--name", "n", "--", "img", "ls", "-l"}, "run", []string{"img", "ls", "-l"}, []string{"name=n"}},
		{"run img -- ls (docker passes -- on)", []string{"run", "img", "--", "ls"}, "run", []string{"img", "--", "ls"}, nil},
		{"create -v a:/b img --help", []string{"create", "-v", "/a:/b", "img", "--help"}, "create", []string{"img", "--help"}, []string{"volume=/a:/b"}},
		{"exec -e A=1 c sh -c 'echo -n x' -e", []string{"exec", "-e", "A=1", "c", "sh", "-c", "echo -n x", "-e", "B=2"},
			"exec", []string{"c", "sh", "-c", "echo -n x", "-e", "B=2"}, []string{"env=A=1"}},
		{"exec c -w /x (the command's)", []string{"exec", "c", "-w", "/x"}, "exec", []string{"c", "-w", "/x"}, nil},
		// global flags before the command
		{"--root r images -q", []string{"--root", "/tmp/r", "images", "-q"}, "images", nil, []string{"quiet=true"}},
		{"--root=r ps -a", []string{"--root=/tmp/r", "ps", "-a"}, "ps", nil, []string{"all=true"}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			got, err := parseOnly(t, tc.args...)
			if err != nil {
				t.Fatalf("snap %q: %v", tc.args, err)
			}
			slices.Sort(got.set)
			want := slices.Sorted(slices.Values(tc.set))
			if got.cmd != tc.cmd || !slices.Equal(got.args, tc.pos) || !slices.Equal(got.set, want) {
				t.Errorf("snap %q:\n got %s %q %q\nwant %s %q %q", tc.args, got.cmd, got.args, got.set, tc.cmd, tc.pos, want)
			}
		})
	}
}

// TestFlagErrorsNameTheFlag: what snap cannot parse is a usage error (exit
// 2) on one line that names the flag, the value or the command at fault.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `'nosuch' is not a snap command`},
		{[]string{"--root", t.TempDir(), "nosuch", "-x"}, `'nosuch' is not a snap command`},
		{[]string{"nosuch\nsnap: forged"}, `"nosuch\nsnap: forged" is not a snap command`},
		{[]string{"ps", "-az"}, `unknown shorthand flag: 'z' in -az`},
		{[]string{"commit", "c", "x:1", "--nope"}, "commit: unknown flag: --nope"},
		{[]string{"commit", "c", "x:1", "--nope=1"}, "commit: unknown flag: --nope"},
		{[]string{"commit", "c", "x:1", "-m"}, "commit: flag needs an argument: -m"},
		{[]string{"commit", "c", "x:1", "--message"}, "commit: flag needs an argument: --message"},
		{[]string{"commit", "c", "x:1", "-pm"}, "commit: flag needs an argument: 'm' in -pm"},
		{[]string{"commit", "c", "x:1", "--root", "/x"}, "commit: unknown flag: --root (global flags go before the command)"},
		{[]string{"commit", "c", "---m", "x"}, "commit: bad flag syntax: ---m"},
		{[]string{"--root"}, "flag needs an argument: --root"},
		{[]string{"--nope", "images"}, "unknown flag: --nope"},
		{[]string{"history", "img", "-H=maybe"}, `invalid boolean value "maybe" for -H`},
		{[]string{"stop", "c", "-t", "soon"}, `invalid value "soon" for flag -t`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(t.Context(), append([]string{"snap"}, tc.args...), &out, &errb)
			msg := errb.String()
			if code != 2 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "snap: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("exit %d, stderr %q: want exit 2 and one line 'snap: ...%s...'", code, msg, tc.want)
			}
		})
	}
}
