package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmux is a tmux server of the test's own, with one session whose pane
// runs a shell, driven as a person at a terminal would: keys in, the
// screen read back.
type tmux struct {
	t    *testing.T
	sock string
	env  []string
}

func newTmux(t *testing.T, e *env, cols, rows int) *tmux {
	t.Helper()
	_, err := exec.LookPath("tmux")
	require(t, err == nil, "tmux")
	x := &tmux{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock"), env: e.environ()}
	// The pane's shell starts in the test's directory with the store's
	// environment; -f /dev/null: no user's configuration.
	x.run("-f", "/dev/null", "new-session", "-d", "-s", "snap", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows), "-c", e.dir, "/bin/sh")
	t.Cleanup(func() { exec.Command("tmux", "-S", x.sock, "kill-server").Run() })
	return x
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", x.sock}, args...)...)
	cmd.Env = x.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %q: %v: %s", args, err, out)
	}
	return string(out)
}

// keys types a line (and Enter), or sends tmux key names with enter false.
func (x *tmux) keys(line string) {
	x.t.Helper()
	x.run("send-keys", "-t", "snap", "-l", line)
	x.run("send-keys", "-t", "snap", "Enter")
}

// screen is what the pane shows, its scrollback included.
func (x *tmux) screen() string {
	x.t.Helper()
	return x.run("capture-pane", "-p", "-J", "-S", "-", "-t", "snap")
}

// waitFor polls the screen until re matches it, and returns the match; it
// fails the test after a generous bound.
func (x *tmux) waitFor(re string) []string {
	x.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(cmdTimeout)
	for {
		s := x.screen()
		if m := rx.FindStringSubmatch(s); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("the screen never shows %q:\n%s", re, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunTTY runs `snap run -it` in a tmux pane as a person would: the
// container's stdin, stdout and stderr are a pty of its own, sized as the
// pane and resized with it; Ctrl-C reaches the container's foreground
// process; the exit code comes back; and the user's terminal is as it was
// afterwards (stty -g), after a normal exit and after a failed start.
// Markers are printed as `echo M”K`, so the typed line does not match.
func TestRunTTY(t *testing.T) {
	e := newEnv(t)
	x := newTmux(t, e, 100, 30)
	x.keys("stty -g > before; snap run -it --name tt base:1 sh; echo snap-exit1=$?; stty -g > after; echo D''ONE1")
	x.keys("busybox tty; busybox stty size; echo M''K1")
	m := x.waitFor(`(?m)^(\S+)\n(\d+ \d+)\nMK1$`)
	if !regexp.MustCompile(`^/dev/pts/\d+$`).MatchString(m[1]) {
		t.Errorf("tty inside: %q, want /dev/pts/N", m[1])
	}
	if m[2] != "30 100" {
		t.Errorf("stty size inside: %q, want the pane's 30 100", m[2])
	}
	x.run("resize-window", "-t", "snap", "-x", "80", "-y", "20")
	x.keys("busybox stty size; echo M''K2")
	if m := x.waitFor(`(?m)^(\d+ \d+)\nMK2$`); m[1] != "20 80" {
		t.Errorf("stty size after the pane's resize: %q, want 20 80", m[1])
	}
	// Ctrl-C is a key to the pty, which signals its foreground process
	// group: sleep dies of SIGINT, the shell lives on.
	x.keys("sh -c 'echo SL''EEPING; exec sleep 600'")
	x.waitFor(`(?m)^SLEEPING$`)
	x.run("send-keys", "-t", "snap", "C-c")
	x.waitFor(`(?m)^\^C\n/ # $`)
	x.keys("echo sleep-status=$?")
	x.waitFor(`(?m)^sleep-status=130`)
	x.keys("exit 7")
	x.waitFor(`(?m)^DONE1$`)
	if m := x.waitFor(`(?m)^snap-exit1=(\d+)$`); m[1] != "7" {
		t.Errorf("snap run -it exit code %s, want the shell's 7", m[1])
	}
	sameFile(t, filepath.Join(e.dir, "before"), filepath.Join(e.dir, "after"), "the terminal's settings after snap run -it")

	// A SIGTERM to snap goes to the container; once the container is gone
	// snap puts the terminal back as it found it.
	x.keys("snap run -it --rm base:1 sh -c 'trap \"exit 9\" TERM; echo TR''APPED; while :; do sleep 0.05; done'; echo snap-exit3=$?; stty -g > after3; echo D''ONE3")
	x.waitFor(`(?m)^TRAPPED\r?$`)
	shell, err := strconv.Atoi(strings.TrimSpace(x.run("display-message", "-p", "-t", "snap", "#{pane_pid}")))
	if err != nil {
		t.Fatal(err)
	}
	children, err := os.ReadFile("/proc/" + strconv.Itoa(shell) + "/task/" + strconv.Itoa(shell) + "/children")
	if err != nil || len(strings.Fields(string(children))) != 1 {
		t.Fatalf("the pane's shell's children: %q, %v; want snap alone", children, err)
	}
	snapPid, _ := strconv.Atoi(strings.Fields(string(children))[0])
	if err := syscall.Kill(snapPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	x.waitFor(`(?m)^DONE3$`)
	if m := x.waitFor(`(?m)^snap-exit3=(\d+)$`); m[1] != "9" {
		t.Errorf("snap run -it after SIGTERM: exit %s, want the trap's 9", m[1])
	}
	sameFile(t, filepath.Join(e.dir, "before"), filepath.Join(e.dir, "after3"), "the terminal's settings after a SIGTERM to snap run -it")

	// Without -t the container never gets the terminal itself, as with
	// docker: pipes, and snap copies (a key typed after the exit is not
	// needed to end the copy).
	x.keys("snap run --rm base:1 sh -c 'for f in 0 1 2; do busybox readlink /proc/self/fd/$f; done'; echo D''ONE4")
	if m := x.waitFor(`(?m)^(.*)\n(.*)\n(.*)\nDONE4$`); m[1] != "/dev/null" || !strings.HasPrefix(m[2], "pipe:") || !strings.HasPrefix(m[3], "pipe:") {
		t.Errorf("run in a terminal: stdin, stdout, stderr %q, want /dev/null and pipes", m[1:])
	}
	x.keys("snap run -i --rm base:1 sh -c 'busybox readlink /proc/self/fd/0; echo RE''ADY; read x; echo got-$x'; echo D''ONE5")
	x.waitFor(`(?m)^READY$`)
	x.keys("typed")
	m = x.waitFor(`(?m)^(.*)\nREADY\ntyped\ngot-typed\nDONE5$`)
	if !strings.HasPrefix(m[1], "pipe:") {
		t.Errorf("run -i in a terminal: stdin %q, want a pipe", m[1])
	}

	// A start that fails after the terminal went raw restores it too.
	x.keys("snap run -it --rm base:1 /no/such/program; echo snap-exit2=$?; stty -g > after2; echo D''ONE2")
	x.waitFor(`(?m)^DONE2$`)
	if m := x.waitFor(`(?m)^snap-exit2=(\d+)$`); m[1] == "0" {
		t.Errorf("snap run of a missing program: exit 0")
	}
	sameFile(t, filepath.Join(e.dir, "before"), filepath.Join(e.dir, "after2"), "the terminal's settings after a failed snap run -it")
}

func sameFile(t *testing.T, a, b, what string) {
	t.Helper()
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ab) == 0 || string(ab) != string(bb) {
		t.Errorf("%s: %q, before %q", what, bb, ab)
	}
}

// TestRunStdin: as docker run, the process's stdin is /dev/null without
// -i and snap's stdin with it; -t without a terminal on snap's side still
// gives a pty (its output with the pty's \r\n, as docker's); -it without a
// terminal is refused before anything is made.
func TestRunStdin(t *testing.T) {
	e := newEnv(t)
	withStdin := func(in string, args ...string) (string, string, int) {
		t.Helper()
		return e.snapIn(strings.NewReader(in), args...)
	}
	tests := []struct {
		name     string
		args     []string
		out, err string
		code     int
	}{
		{"no -i: /dev/null", []string{"run", "--rm", "base:1", "sh", "-c", "busybox readlink /proc/self/fd/0; cat"}, "/dev/null\n", "", 0},
		{"-i: snap's stdin", []string{"run", "--rm", "-i", "base:1", "cat"}, "typed\n", "", 0},
		{"-t without a terminal", []string{"run", "--rm", "-t", "base:1", "busybox", "tty"}, "/dev/pts/0\r\n", "", 0},
		{"-t: stderr goes to the pty too", []string{"run", "--rm", "-t", "base:1", "sh", "-c", "echo err >&2"}, "err\r\n", "", 0},
		{"-it without a terminal", []string{"run", "--rm", "-it", "base:1", "true"}, "", "snap: the input device is not a TTY\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := withStdin("typed\n", tc.args...)
			if out != tc.out || errs != tc.err || code != tc.code {
				t.Errorf("snap %q: out %q err %q exit %d, want %q %q %d", tc.args, out, errs, code, tc.out, tc.err, tc.code)
			}
		})
	}
	if ids := e.must("ps", "-a", "-q"); ids != "" {
		t.Errorf("containers left: %s", ids)
	}
}

// TestDetachedExit: a detached container's exit code and time are
// recorded by its monitor and shown by ps -a and inspect as docker's;
// snap wait blocks until the exit and prints the code (a --rm container's
// too, before it goes), and prints a stopped container's recorded code at
// once. -d's stdin is /dev/null, -di's a pipe that stays open.
func TestDetachedExit(t *testing.T) {
	e := newEnv(t)
	vol := filepath.Join(e.dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	e.must("run", "-d", "--name", "three", "base:1", "sh", "-c", "exit 3")
	if out := e.must("wait", "three"); out != "3\n" {
		t.Errorf("snap wait three: %q, want 3", out)
	}
	// The wait is over: the exit is recorded, nothing is polled for.
	if s := e.status("three"); !regexp.MustCompile(`^Exited \(3\) (Less than a second|\d+ seconds?) ago$`).MatchString(s) {
		t.Errorf("ps -a status %q, want Exited (3) N seconds ago", s)
	}
	var insp []struct {
		State struct {
			Status                string
			Running               bool
			ExitCode              int
			StartedAt, FinishedAt time.Time
		}
		Config struct{ Tty, OpenStdin bool }
	}
	if err := json.Unmarshal([]byte(e.must("inspect", "three")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	st := insp[0].State
	if st.Status != "exited" || st.Running || st.ExitCode != 3 || st.FinishedAt.Before(st.StartedAt) || st.StartedAt.IsZero() {
		t.Errorf("inspect State %+v, want exited, code 3, finished after started", st)
	}
	if out := e.must("wait", "three", "three"); out != "3\n3\n" {
		t.Errorf("snap wait of an exited container, twice: %q", out)
	}
	e.must("create", "--name", "created", "base:1", "true")
	if out := e.must("wait", "created"); out != "0\n" {
		t.Errorf("snap wait of a created container: %q, want docker's 0", out)
	}

	// wait blocks while the container runs: the code it prints is the one
	// the container exits with once the test lets it.
	script := func(code string) string {
		return "while [ ! -e /v/go ]; do sleep 0.05; done; exit " + code
	}
	for _, tc := range []struct {
		name, code string
		rm         bool
	}{{"running", "5", false}, {"running-rm", "4", true}} {
		os.Remove(filepath.Join(vol, "go"))
		args := []string{"run", "-d", "--name", tc.name, "-v", vol + ":/v"}
		if tc.rm {
			args = append(args, "--rm")
		}
		e.must(append(args, "base:1", "sh", "-c", script(tc.code))...)
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		cmd := exec.CommandContext(ctx, bin, "wait", tc.name)
		cmd.Env, cmd.Dir = e.environ(), e.dir
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if s := e.status(tc.name); !strings.HasPrefix(s, "Up") {
			t.Errorf("%s: status %q while it waits for /v/go", tc.name, s)
		}
		os.WriteFile(filepath.Join(vol, "go"), nil, 0o644)
		err := cmd.Wait()
		cancel()
		if err != nil || out.String() != tc.code+"\n" {
			t.Errorf("snap wait %s: %v, printed %q, want %s", tc.name, err, out.String(), tc.code)
		}
	}

	// -dt: the monitor holds the pty's master and logs what comes out.
	e.must("run", "-dt", "--name", "dt", "base:1", "sh", "-c", "busybox tty; exit 4")
	if out := e.must("wait", "dt"); out != "4\n" {
		t.Errorf("wait dt: %q, want 4", out)
	}
	if out := e.must("logs", "dt"); !regexp.MustCompile(`^/dev/pts/\d+\r\n$`).MatchString(out) {
		t.Errorf("logs of run -dt: %q, want a pty and its \\r\\n", out)
	}
	// -dit: a shell on a pty nobody types to waits, as docker's.
	e.must("run", "-dit", "--name", "dit", "base:1", "sh")
	if out := e.must("exec", "dit", "busybox", "readlink", "/proc/1/fd/0"); !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("run -dit: the shell's stdin %q, want its pty", out)
	}
	e.must("kill", "dit")
	if out := e.must("wait", "dit"); out != "137\n" {
		t.Errorf("wait after kill: %q, want 137", out)
	}

	e.must("run", "-d", "--name", "noi", "base:1", "sh", "-c", "busybox readlink /proc/self/fd/0")
	e.must("wait", "noi")
	if out := e.must("logs", "noi"); out != "/dev/null\n" {
		t.Errorf("run -d: stdin %q, want /dev/null", out)
	}
	// -di: a pipe that nobody writes to and nobody closes (docker's
	// attach would write to it), so cat waits until the kill.
	e.must("run", "-di", "--name", "withi", "base:1", "sh", "-c", "busybox readlink /proc/self/fd/0; cat; echo EOF")
	f := e.follow("withi")
	if line := f.line(); !strings.HasPrefix(line, "pipe:") {
		t.Errorf("run -di: stdin %q, want a pipe", line)
	}
	e.must("kill", "withi")
	if out := e.must("wait", "withi"); out != "137\n" {
		t.Errorf("wait after kill: %q, want 137", out)
	}
	if rest := f.rest(); rest != "" {
		t.Errorf("run -di: cat saw its stdin end (%q)", rest)
	}
}

// follower is a running `snap logs -f`.
type follower struct {
	t   *testing.T
	cmd *exec.Cmd
	r   *bufio.Reader
}

func (e *env) follow(args ...string) *follower {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	e.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, append([]string{"logs", "-f"}, args...)...)
	cmd.Env, cmd.Dir = e.environ(), e.dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return &follower{t: e.t, cmd: cmd, r: bufio.NewReader(out)}
}

// line is the next line logs -f prints, without its newline.
func (f *follower) line() string {
	f.t.Helper()
	l, err := f.r.ReadString('\n')
	if err != nil {
		f.t.Fatalf("logs -f: %v after %q", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

// rest is what logs -f prints until it exits, which it must do by itself.
func (f *follower) rest() string {
	f.t.Helper()
	b, _ := io.ReadAll(f.r)
	if err := f.cmd.Wait(); err != nil {
		f.t.Errorf("logs -f: %v", err)
	}
	return string(b)
}

// TestLogsFollow: logs -f prints what the container wrote, then each line
// as the container writes it, and exits when the container does; --tail
// starts that many lines before the end.
func TestLogsFollow(t *testing.T) {
	e := newEnv(t)
	vol := filepath.Join(e.dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each step waits for the test's go-N file, so each line is written
	// after logs -f printed the one before.
	e.must("run", "-d", "--name", "lf", "-v", vol+":/v", "base:1", "sh", "-c",
		"echo one; for i in 1 2 3; do while [ ! -e /v/go-$i ]; do sleep 0.05; done; echo line-$i; done; exit 2")
	f := e.follow("lf")
	if l := f.line(); l != "one" {
		t.Fatalf("logs -f first line %q", l)
	}
	for i := 1; i <= 3; i++ {
		os.WriteFile(filepath.Join(vol, "go-"+strconv.Itoa(i)), nil, 0o644)
		if l, want := f.line(), "line-"+strconv.Itoa(i); l != want {
			t.Fatalf("logs -f: %q, want %q", l, want)
		}
	}
	if rest := f.rest(); rest != "" {
		t.Errorf("logs -f after the last line: %q", rest)
	}
	for _, tc := range []struct{ tail, want string }{
		{"all", "one\nline-1\nline-2\nline-3\n"}, {"2", "line-2\nline-3\n"}, {"0", ""}, {"10", "one\nline-1\nline-2\nline-3\n"}, {"-1", "one\nline-1\nline-2\nline-3\n"},
	} {
		if out := e.must("logs", "--tail", tc.tail, "lf"); out != tc.want {
			t.Errorf("logs --tail %s: %q, want %q", tc.tail, out, tc.want)
		}
	}
	if out := e.must("logs", "-f", "--tail", "1", "lf"); out != "line-3\n" {
		t.Errorf("logs -f of an exited container: %q", out)
	}
	e.must("create", "--name", "never", "base:1", "true")
	if out := e.must("logs", "-f", "never"); out != "" {
		t.Errorf("logs -f of a created container: %q", out)
	}
}

// TestEntrypoint: --entrypoint replaces the image's ENTRYPOINT and drops
// its CMD; "" clears it (then the command is the run's arguments only), as
// docker run does (the wants are what docker 20.10 prints for the same
// image).
func TestEntrypoint(t *testing.T) {
	e := newEnv(t)
	e.must("create", "--name", "src", "base:1", "true")
	e.must("commit", "-c", `ENTRYPOINT ["echo","ep"]`, "-c", `CMD ["cmdarg"]`, "src", "ep:1")
	tests := []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"ep:1"}, "ep cmdarg\n", 0},
		{[]string{"ep:1", "x", "y"}, "ep x y\n", 0},
		{[]string{"--entrypoint", "echo", "ep:1"}, "\n", 0},
		{[]string{"--entrypoint", "echo", "ep:1", "a", "b"}, "a b\n", 0},
		{[]string{"--entrypoint=sh", "ep:1", "-c", "echo via sh"}, "via sh\n", 0},
		{[]string{"--entrypoint", "", "ep:1", "echo", "cleared"}, "cleared\n", 0},
		{[]string{"--entrypoint", "", "ep:1"}, "", 1}, // no command: docker's "No command specified"
	}
	for _, tc := range tests {
		out, errs, code := e.snap(append([]string{"run", "--rm"}, tc.args...)...)
		if out != tc.out || code != tc.code {
			t.Errorf("snap run %q: %q exit %d (%s), want %q exit %d", tc.args, out, code, errs, tc.out, tc.code)
		}
	}
	// The container's config holds the run's entrypoint, and so does its
	// commit (docker commit takes the container's config).
	const format = "{{json .Config.Entrypoint}} {{json .Config.Cmd}}"
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--entrypoint", "", "ep:1", "echo", "hi"}, "null [\"echo\",\"hi\"]\n"},
		{[]string{"--entrypoint", "sh", "ep:1", "-c", "echo x"}, "[\"sh\"] [\"-c\",\"echo x\"]\n"},
		{[]string{"--entrypoint", "echo", "ep:1"}, "[\"echo\"] null\n"},
		{[]string{"ep:1", "x"}, "[\"echo\",\"ep\"] [\"x\"]\n"},
	} {
		name := "c" + strconv.Itoa(i)
		e.must(append([]string{"create", "--name", name}, tc.args...)...)
		if got := e.must("inspect", "-f", format, name); got != tc.want {
			t.Errorf("inspect of create %q: %s, want %s", tc.args, got, tc.want)
		}
		e.must("commit", name, name+":1")
		if got := e.must("inspect", "-f", format, name+":1"); got != tc.want {
			t.Errorf("commit of create %q: %s, want %s", tc.args, got, tc.want)
		}
		// docker's history names the container's Cmd alone.
		var cmd []string
		json.Unmarshal([]byte(strings.SplitN(strings.TrimSpace(tc.want), " ", 2)[1]), &cmd)
		if got := strings.Split(e.must("history", "--no-trunc", "--format", "{{.CreatedBy}}", name+":1"), "\n")[0]; got != strings.Join(cmd, " ") {
			t.Errorf("history of the commit of create %q: created by %q, want %q", tc.args, got, strings.Join(cmd, " "))
		}
	}
}
