package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"snap/internal/fixtures"
	"snap/internal/testenv"
)

func TestSourceDateEpochRange(t *testing.T) {
	w := t.TempDir()
	t.Setenv("SNAP_ROOT", filepath.Join(w, "store"))
	tarball := filepath.Join(w, "rootfs.tar")
	if err := os.WriteFile(tarball, tinyRootfs(t, map[string]string{"etc/motd": "hi\n"}), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(w, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	out := filepath.Join(w, "layer.tar")
	tests := []struct {
		env  string // SOURCE_DATE_EPOCH
		args []string
		code int
		want string
	}{
		{"", []string{"import", tarball, "x:1", "--source-date-epoch", "99999999999999"}, 2, `"99999999999999"`},
		{"", []string{"import", tarball, "x:1", "--source-date-epoch", "253402300800"}, 2, `"253402300800"`},
		{"", []string{"import", tarball, "x:1", "--source-date-epoch", "-1"}, 2, `"-1"`},
		{"", []string{"layer", "--rootfs", rootfs, "-o", out, "--source-date-epoch", "99999999999999"}, 2, `"99999999999999"`},
		{"", []string{"commit", "--source-date-epoch=1e3", "dir://" + rootfs, "x:1"}, 2, `"1e3"`},
		{"99999999999999", []string{"import", tarball, "x:1"}, 2, `"99999999999999"`},
		{"", []string{"import", tarball, "x:9999", "--source-date-epoch", "253402300799"}, 0, ""},
		{"", []string{"import", tarball, "x:1970", "--source-date-epoch", "0"}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.env+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.env)
			if tc.env == "" {
				os.Unsetenv("SOURCE_DATE_EPOCH")
			}
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append([]string{"snap"}, tc.args...), &stdout, &stderr)
			if code != tc.code || (tc.want != "" && (!strings.Contains(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") != 1)) {
				t.Errorf("exit %d, stderr %q: want exit %d, one line naming %s", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// TestEmptyNames: an empty name is a usage error that says so, before
// anything looks it up.
func TestEmptyNames(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"diff", ""}, "diff: the container name is empty"},
		{[]string{"diff", "docker://"}, "docker://: the container name is empty"},
		{[]string{"diff", "runc://"}, "runc://: the container id is empty"},
		{[]string{"commit", "", "x:1"}, "commit: the container name is empty"},
		{[]string{"commit", "dir://", "x:1"}, "dir://: the path is empty"},
		{[]string{"commit", "docker://c", ""}, "commit: the image name is empty"},
		{[]string{"history", ""}, "history: the image name is empty"},
		{[]string{"inspect", "a:1", ""}, "inspect: the image name is empty"},
		{[]string{"rmi", ""}, "rmi: the image name is empty"},
		{[]string{"save", "-o", "/dev/null", ""}, "save: the image name is empty"},
		{[]string{"tag", "", "x:1"}, "tag: the image name is empty"},
		{[]string{"tag", "a:1", ""}, "tag: the new image name is empty"},
		{[]string{"import", "", "x:1"}, "import: the file name is empty"},
		{[]string{"run", "", "sh"}, "run: the image name is empty"},
		{[]string{"create", ""}, "create: the image name is empty"},
		{[]string{"exec", "", "sh"}, "exec: the container name is empty"},
		{[]string{"rm", "-f", "c", ""}, "rm: the container name is empty"},
		{[]string{"logs", ""}, "logs: the container name is empty"},
		{[]string{"wait", "c", ""}, "wait: the container name is empty"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			requireRootFor(t, tc.args...)
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append([]string{"snap"}, tc.args...), &stdout, &stderr)
			if code != 2 || stderr.String() != "snap: "+tc.want+"\n" {
				t.Errorf("exit %d, stderr %q: want exit 2, %q", code, stderr.String(), "snap: "+tc.want)
			}
		})
	}
	// The container's own arguments may be empty.
	if got, err := parseOnly(t, "run", "img", "sh", "-c", ""); err != nil || len(got.args) != 4 {
		t.Errorf("run img sh -c '': %q, %v", got.args, err)
	}
}

// TestControlCharactersQuoted: a name holding a newline can neither forge
// a line of `snap diff` nor a second line of an error.
func TestControlCharactersQuoted(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	upper := t.TempDir()
	for _, name := range []string{"a\nD hosts", "plain name", "é", "tab\there", "esc\x1b[2J"} {
		if err := os.WriteFile(filepath.Join(upper, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Run(t.Context(), []string{"snap", "diff", "--upper", upper, "--upper-format", "aufs"}, &stdout, &stderr); code != 0 {
		t.Fatalf("diff: exit %d: %s", code, stderr.String())
	}
	want := `A "/a\nD hosts"` + "\n" + `A "/esc\x1b[2J"` + "\n" + "A /plain name\n" + `A "/tab\there"` + "\n" + "A /é\n"
	if stdout.String() != want {
		t.Errorf("snap diff printed\n%s\nwant\n%s", stdout.String(), want)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"history", "x\nsnap: forged"}, `x\nsnap: forged`},
		{[]string{"inspect", "x\rforged"}, `x\rforged`},
		{[]string{"diff", "c\nforged"}, `diff "c\nforged": `},
		{[]string{"layer", "--rootfs", upper, "-o", "/no/such\nforged/out"}, `\nforged`},
		{[]string{"commit", "dir:///no/such\nforged", "x:1"}, `\nforged`},
		{[]string{"import", "/no/such\nforged", "x:1"}, `\nforged`},
	} {
		args := tc.args
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			requireRootFor(t, args...)
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append([]string{"snap"}, args...), &stdout, &stderr)
			msg := stderr.String()
			if code != 1 || strings.Count(msg, "\n") != 1 || strings.ContainsAny(strings.TrimSuffix(msg, "\n"), "\r\n") ||
				!strings.Contains(msg, tc.want) {
				t.Errorf("exit %d, stderr %q: want one line holding %q", code, msg, tc.want)
			}
		})
	}
}

// buildSnap builds bin/snap into a directory anyone may read, for runs as
// another user.
func buildSnap(t *testing.T) (bin, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "snap-cli-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// TestNonRootSaysRootNeeded runs the real binary as nobody: the commands
// that need root say so once, up front; the others work.
func TestNonRootSaysRootNeeded(t *testing.T) {
	requireRoot(t, "setpriv to nobody")
	setpriv := testenv.Tool(t, "setpriv")
	bin, dir := buildSnap(t)
	home := filepath.Join(dir, "home")
	rootfs := filepath.Join(dir, "rootfs")
	upper := filepath.Join(dir, "upper")
	for _, d := range []string{home, rootfs, upper} {
		os.MkdirAll(d, 0o755)
	}
	os.Chown(home, 65534, 65534)
	if err := fixtures.Base(rootfs); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644)
	out := func(name string) string { return filepath.Join(home, name) }
	nobody := func(args ...string) (string, int) {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		cmd.Env = []string{"HOME=" + home, "SNAP_ROOT=" + filepath.Join(home, "store"), "PATH=/usr/bin:/bin"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stderr.String(), code
	}
	// What nobody can do: its own store, images, archives, rootfs layers.
	for _, args := range [][]string{
		{"import", rootfs, "base:1"},
		{"images"},
		{"history", "base:1"},
		{"inspect", "base:1"},
		{"save", "-o", out("base.tar"), "base:1"},
		{"load", "-i", out("base.tar")},
		{"layer", "--rootfs", rootfs, "-o", out("rootfs.tar")},
		{"layer", "--upper", upper, "--upper-format", "aufs", "-o", out("aufs.tar")},
		{"commit", "dir://" + rootfs, "whole:1"},
		{"ps", "-a"},
	} {
		if stderr, code := nobody(args...); code != 0 {
			t.Errorf("as nobody, snap %q: exit %d: %s", args, code, stderr)
		}
	}
	// What needs root says so, once, before touching anything.
	for _, args := range [][]string{
		{"run", "--rm", "base:1", "true"},
		{"create", "base:1"},
		{"start", "c"},
		{"exec", "c", "true"},
		{"stop", "c"},
		{"kill", "c"},
		{"rm", "-f", "c"},
		{"pause", "c"},
		{"mount", "c"},
		{"commit", "c", "x:1"},
		{"commit", "docker://c", "x:1"},
		{"commit", "runc://c", "x:1"},
		{"commit", "--base", "base:1", "dir://" + rootfs, "x:1"},
		{"diff", "c"},
		{"diff", "--base", "base:1", "dir://" + rootfs},
		{"diff", "--upper", upper},
		{"layer", "--upper", upper, "-o", out("upper.tar")},
	} {
		stderr, code := nobody(args...)
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "snap: "+args[0]+": needs root") ||
			!strings.HasSuffix(stderr, "(running as uid 65534)\n") {
			t.Errorf("as nobody, snap %q: exit %d, stderr %q: want one line 'snap: %s: needs root... (running as uid 65534)'", args, code, stderr, args[0])
		}
	}
	if _, err := os.Stat(out("upper.tar")); err == nil {
		t.Error("layer --upper wrote a layer as nobody")
	}
}

// TestRunPassesCommandFlags runs a real container: what follows the image
// is the container's, flags included.
func TestRunPassesCommandFlags(t *testing.T) {
	requireRoot(t, "containers")
	bin, dir := buildSnap(t)
	rootfs := filepath.Join(dir, "rootfs")
	if err := fixtures.Base(rootfs); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SNAP_ROOT="+filepath.Join(dir, "store"))
	snap := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("snap %q: %v", args, err)
		}
		return string(out)
	}
	snap("import", rootfs, "snap-cli/flags:1", "-m", "flags after")
	got := snap("run", "--rm", "snap-cli/flags:1", "sh", "-c", `echo -n x; echo "[$0|$1]"`, "-n", "--rm")
	if got != "x[-n|--rm]\n" {
		t.Errorf("snap run printed %q, want %q", got, "x[-n|--rm]\n")
	}
}
