package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestExecAttach: snap exec takes docker exec's -i, -t, -u, -w, -e and -d,
// and attaches the process as run does: without -i its stdin is /dev/null,
// with -i snap's stdin; -t gives it a pty of its own (TERM=xterm); -u names
// a user of the container's passwd or uid:gid; -it without a terminal and
// -dt are refused before anything runs.
func TestExecAttach(t *testing.T) {
	e := newEnv(t)
	e.must("run", "-d", "--name", "ex", "-u", "user", "base:1", "sleep", "600")
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
		{"no -i: /dev/null", []string{"exec", "ex", "sh", "-c", "busybox readlink /proc/self/fd/0; cat"}, "/dev/null\n", "", 0},
		{"-i: snap's stdin", []string{"exec", "-i", "ex", "cat"}, "typed\n", "", 0},
		{"-t: a pty", []string{"exec", "-t", "ex", "sh", "-c", "busybox tty; echo $TERM; exit 3"}, "/dev/pts/0\r\nxterm\r\n", "", 3},
		{"the container's user", []string{"exec", "ex", "id", "-u"}, "1000\n", "", 0},
		{"-u NAME", []string{"exec", "-u", "root", "ex", "sh", "-c", "id -u; echo $HOME"}, "0\n/root\n", "", 0},
		{"-u UID:GID", []string{"exec", "-u", "7:8", "ex", "sh", "-c", "id -u; id -g"}, "7\n8\n", "", 0},
		{"-w and -e", []string{"exec", "-w", "/tmp", "-e", "FOO=bar", "ex", "sh", "-c", "echo $PWD $FOO"}, "/tmp bar\n", "", 0},
		{"-it without a terminal", []string{"exec", "-it", "ex", "true"}, "", "snap: the input device is not a TTY\n", 1},
		{"-dt", []string{"exec", "-dt", "ex", "true"}, "", "snap: exec: -d with -t: nothing would hold the terminal once snap returns\n", 2},
		{"-d", []string{"exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d"}, "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := withStdin("typed\n", tc.args...)
			if out != tc.out || errs != tc.err || code != tc.code {
				t.Errorf("snap %q: out %q err %q exit %d, want %q %q %d", tc.args, out, errs, code, tc.out, tc.err, tc.code)
			}
		})
	}
	if t.Failed() {
		return // the wait below is for a -d that worked
	}
	// -d returned once the process started; it writes soon after.
	e.must("exec", "ex", "sh", "-c", "while [ ! -s /tmp/d ]; do sleep 0.05; done")
	if out := e.must("exec", "ex", "cat", "/tmp/d"); out != "detached\n" {
		t.Errorf("exec -d wrote %q, want detached", out)
	}
}

// TestExecInTerminal: as run, exec never gives the process snap's own
// terminal without -t (pipes, and snap copies), and exec -it gives it a
// pty sized as the user's terminal, whose exit code comes back.
func TestExecInTerminal(t *testing.T) {
	e := newEnv(t)
	e.must("run", "-d", "--name", "ex", "base:1", "sleep", "600")
	x := newTmux(t, e, 100, 30)
	x.keys("snap exec ex sh -c 'for f in 0 1 2; do busybox readlink /proc/self/fd/$f; done'; echo D''ONE1")
	if m := x.waitFor(`(?m)^(.*)\n(.*)\n(.*)\nDONE1$`); m[1] != "/dev/null" || !strings.HasPrefix(m[2], "pipe:") || !strings.HasPrefix(m[3], "pipe:") {
		t.Errorf("exec in a terminal: stdin, stdout, stderr %q, want /dev/null and pipes", m[1:])
	}
	x.keys("snap exec -i ex busybox readlink /proc/self/fd/0; echo D''ONE2")
	if m := x.waitFor(`(?m)^(.*)\nDONE2$`); !strings.HasPrefix(m[1], "pipe:") {
		t.Errorf("exec -i in a terminal: stdin %q, want a pipe", m[1])
	}
	x.keys("snap exec -it ex sh; echo snap-exit=$?; echo D''ONE3")
	x.keys("busybox tty; busybox stty size; echo M''K1")
	m := x.waitFor(`(?m)^(\S+)\n(\d+ \d+)\nMK1$`)
	if !regexp.MustCompile(`^/dev/pts/\d+$`).MatchString(m[1]) || m[2] != "30 100" {
		t.Errorf("exec -it: tty %q, size %q; want /dev/pts/N, 30 100", m[1], m[2])
	}
	x.keys("exit 6")
	x.waitFor(`(?m)^DONE3$`)
	if m := x.waitFor(`(?m)^snap-exit=(\d+)$`); m[1] != "6" {
		t.Errorf("snap exec -it exit code %s, want the shell's 6", m[1])
	}
}
