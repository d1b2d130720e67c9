package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// need skips when a tool the test drives is missing, and fails in CI, which
// must never go green by skipping.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (.ci/run installs it)", tool)
			}
			t.Skipf("needs %s", tool)
		}
	}
}

func output(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMakeInstall installs snap as a user would, into a temp PREFIX, and
// uses what it installed: the binary's version, bash completion typed into
// a real bash in tmux, and man snap.
func TestMakeInstall(t *testing.T) {
	need(t, "make", "git", "tmux", "bash", "man")
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	env := os.Environ()
	if exec.Command("git", "-C", src, "rev-parse", "HEAD").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the source is no git checkout: snap version has no commit to show")
		}
		t.Skip("needs a git checkout (snap version shows its commit)")
	}
	describe := strings.TrimSpace(output(t, env, "git", "-C", src, "describe", "--always", "--dirty"))
	head := strings.TrimSpace(output(t, env, "git", "-C", src, "rev-parse", "HEAD"))
	w := t.TempDir()
	prefix := filepath.Join(w, "prefix")
	// BIN outside the tree: the test leaves the checkout's bin/ alone.
	output(t, env, "make", "-C", src, "install", "PREFIX="+prefix, "BIN="+filepath.Join(w, "build", "snap"))
	snap := filepath.Join(prefix, "bin", "snap")

	t.Run("version", func(t *testing.T) {
		long := output(t, env, snap, "version")
		for _, want := range []string{"Version:       " + describe + "\n", "Git commit:    " + head, "Go version:    go1.", "libcontainer:  v", "Seccomp:       yes"} {
			if !strings.Contains(long, want) {
				t.Errorf("snap version lacks %q:\n%s", want, long)
			}
		}
		for _, flag := range []string{"--version", "-v"} {
			short := output(t, env, snap, flag)
			if want := "snap version " + describe + ", commit " + head; !strings.HasPrefix(short, want) || strings.Count(short, "\n") != 1 {
				t.Errorf("snap %s = %q, want one line starting %q", flag, short, want)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		for _, f := range []string{"share/man/man1/snap.1", "share/bash-completion/completions/snap",
			"share/zsh/site-functions/_snap", "share/fish/vendor_completions.d/snap.fish"} {
			fi, err := os.Stat(filepath.Join(prefix, f))
			if err != nil {
				t.Error(err)
			} else if fi.Mode().Perm() != 0o644 || fi.Size() == 0 {
				t.Errorf("%s: mode %v, %d bytes", f, fi.Mode(), fi.Size())
			}
		}
	})

	t.Run("DESTDIR and uninstall", func(t *testing.T) {
		dest := t.TempDir()
		vars := []string{"DESTDIR=" + dest, "PREFIX=/usr", "BIN=" + filepath.Join(w, "build", "snap")}
		output(t, env, "make", append([]string{"-C", src, "install"}, vars...)...)
		files := []string{"usr/bin/snap", "usr/share/man/man1/snap.1", "usr/share/bash-completion/completions/snap",
			"usr/share/zsh/site-functions/_snap", "usr/share/fish/vendor_completions.d/snap.fish"}
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
				t.Error(err)
			}
		}
		output(t, env, "make", append([]string{"-C", src, "uninstall"}, vars...)...)
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dest, f)); err == nil {
				t.Errorf("%s is left after make uninstall", f)
			}
		}
	})

	t.Run("man", func(t *testing.T) {
		// No MANPATH: man-db finds PREFIX/share/man from PREFIX/bin on PATH,
		// as it finds /usr/local/share/man.
		menv := append(withoutEnv(env, "MANPATH", "PATH", "MANPAGER", "PAGER", "MANWIDTH"),
			"PATH="+filepath.Join(prefix, "bin")+":"+os.Getenv("PATH"), "MANPAGER=cat", "MANWIDTH=80")
		if got, want := strings.TrimSpace(output(t, menv, "man", "-w", "snap")), filepath.Join(prefix, "share/man/man1/snap.1"); got != want {
			t.Errorf("man -w snap = %q, want %q", got, want)
		}
		cmd := exec.Command("man", "--warnings", "snap")
		cmd.Env = menv
		var stderr strings.Builder
		cmd.Stderr = &stderr
		page, err := cmd.Output()
		if err != nil {
			t.Fatalf("man snap: %v: %s", err, stderr.String())
		}
		if stderr.Len() > 0 {
			t.Errorf("man --warnings snap: %s", stderr.String())
		}
		for _, want := range []string{"snap - commit and snapshot engine for container images", "SYNOPSIS", "\ncommit\n", "--to-docker", "SNAP_ROOT"} {
			if !strings.Contains(string(page), want) {
				t.Errorf("man snap lacks %q", want)
			}
		}
	})

	// Ubuntu's snapd is another snap, /usr/bin/snap: one that knows none
	// of these words stands in for it, first on PATH.
	other := filepath.Join(w, "snapd")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "snap"), []byte("#!/bin/sh\necho 'error: unknown command' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(prefix, "bin", "snap")
	for _, tc := range []struct {
		name, path, setup, cmd string
	}{
		{"bash completion", filepath.Join(prefix, "bin"), "", "snap"},
		{"bash completion, snapd first on PATH, by path", other, "", installed},
		{"bash completion, snapd first on PATH, alias", other, "alias snap=" + installed + "; ", "snap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server and its bash get this environment only: no user's
			// configuration, prompt or history.
			home := t.TempDir()
			tenv := []string{"HOME=" + home, "TERM=xterm", "HISTFILE=/dev/null", "PATH=" + tc.path + ":" + os.Getenv("PATH")}
			sock := filepath.Join(t.TempDir(), "tmux.sock")
			tmux := func(args ...string) string {
				return output(t, tenv, "tmux", append([]string{"-S", sock}, args...)...)
			}
			tmux("-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "20", "-c", home, "bash --norc --noprofile")
			t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
			tmux("send-keys", "PS1='$ '; "+tc.setup+"source "+filepath.Join(prefix, "share/bash-completion/completions/snap")+" && clear", "Enter")
			waitScreen(t, tmux, "$ ")
			for _, k := range []struct{ typed, want string }{
				{" com", " commit "},
				{" commit --to-d", " commit --to-docker "},
				{" ima", " image"},
				{" image ins", " image inspect "},
			} {
				tmux("send-keys", tc.cmd+k.typed, "Tab")
				waitScreen(t, tmux, "$ "+tc.cmd+k.want)
				tmux("send-keys", "C-u") // and again, from an empty line
				tmux("send-keys", "C-l")
				waitScreen(t, tmux, "$ ")
			}
		})
	}
}

// waitScreen waits until the pane's first line is want and the cursor ends
// it (capture-pane drops trailing blanks; the cursor shows the space bash
// adds after a whole word). The deadline is only against a hang.
func waitScreen(t *testing.T, tmux func(...string) string, want string) {
	t.Helper()
	var line, cursor string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		line, _, _ = strings.Cut(tmux("capture-pane", "-p"), "\n")
		cursor = strings.TrimSpace(tmux("display-message", "-p", "#{cursor_y} #{cursor_x}"))
		if line == strings.TrimRight(want, " ") && cursor == fmt.Sprintf("0 %d", len(want)) {
			return
		}
	}
	t.Fatalf("first line %q, cursor (row col) %s; want %q and the cursor after it", line, cursor, want)
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		keep := true
		for _, n := range names {
			keep = keep && k != n
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// TestVersionWithoutLdflags: a snap built by plain go build (as the tests
// and go install build it) still names its Go, libcontainer and seccomp.
func TestVersionWithoutLdflags(t *testing.T) {
	bin := buildSnap(t)
	runc := strings.TrimSpace(output(t, os.Environ(), "go", "list", "-m", "-f", "{{.Version}}", "github.com/opencontainers/runc"))
	long := output(t, os.Environ(), bin, "version")
	for _, want := range []string{"Go version:    " + runtime.Version() + "\n", "libcontainer:  " + runc + "\n", "Seccomp:       yes\n", "OS/Arch:       linux/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(long, want) {
			t.Errorf("snap version lacks %q:\n%s", want, long)
		}
	}
	if short := output(t, os.Environ(), bin, "--version"); !strings.Contains(short, ", "+runtime.Version()+", libcontainer "+runc+"\n") {
		t.Errorf("snap --version = %q", short)
	}
}
