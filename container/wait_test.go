package container

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
)

// TestExitIsNeverShownWithoutItsCode: between a run's init exiting and
// its owner recording the exit there is a moment when the runtime says
// stopped and the record has no code. Status, RunState and Wait, asked
// then with the record as it was before the exit, wait for the owner and
// answer with the code.
func TestExitIsNeverShownWithoutItsCode(t *testing.T) {
	_, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "ex3", Args: []string{"sh", "-c", "exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	type answer struct {
		status string
		state  RunState
		code   *int
	}
	got := make(chan answer, 1)
	_, err = m.run(meta, Stdio{}, false, func() {
		c, err := libcontainer.Load(m.State, meta.ID)
		if err != nil || !waitDown(c, time.Minute) {
			t.Errorf("the init never exits: %v", err)
		}
		// The init is gone; this run (its owner) records nothing
		// until this func returns.
		before, err := m.load(meta.ID)
		if err != nil {
			t.Error(err)
		}
		go func() {
			state, now := m.RunState(before)
			got <- answer{m.Status(before), state, now.ExitCode}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	a := <-got
	if !strings.HasPrefix(a.status, "Exited (3) ") || a.state != StateExited || a.code == nil || *a.code != 3 {
		t.Errorf("status %q, state %v, code %v; want Exited (3), exited, 3", a.status, a.state, a.code)
	}
}

// TestSeekTail: logs --tail N starts N lines before the end, a last line
// without its newline counted, over reads of more than one buffer.
func TestSeekTail(t *testing.T) {
	long := strings.Repeat("x", 40<<10)
	tests := []struct {
		body string
		n    int
		want string
	}{
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 9, "a\nb\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 2, "b\nc"},
		{"", 2, ""},
		{"\n\n\n", 2, "\n\n"},
		{long + "\n" + long + "\nend\n", 2, long + "\nend\n"},
		{long + "\n" + long + "\nend\n", 3, long + "\n" + long + "\nend\n"},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := seekTail(f, tc.n); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != tc.want {
			t.Errorf("tail %d of %.20q: %.20q, want %.20q", tc.n, tc.body, b, tc.want)
		}
	}
}
