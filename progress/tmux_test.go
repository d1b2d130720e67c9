package progress

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-units"

	"snap/internal/testenv"
)

// demoLayers are internal/demo's layers.
var demoLayers = []struct {
	id    string
	total int64
}{
	{"0a1b2c3d4e5f", 3_000_000},
	{"1b2c3d4e5f60", 5_000_000},
	{"2c3d4e5f6071", 7_000_000},
}

const demoEnd = "__END__"

// buildDemo builds internal/demo into a temp dir.
func buildDemo(t *testing.T) string {
	t.Helper()
	goCmd := testenv.Tool(t, "go")
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "./internal/demo").CombinedOutput(); err != nil {
		t.Fatalf("go build demo: %v\n%s", err, out)
	}
	return bin
}

// TestTmuxAsAPersonSeesIt runs internal/demo in a real terminal (tmux) and
// looks at the screen while it pulls and when it has finished.
func TestTmuxAsAPersonSeesIt(t *testing.T) {
	tmux := testenv.Tool(t, "tmux")
	demo := buildDemo(t)
	// A socket of our own: the tests never touch anyone's tmux server. The
	// path stays short, under the 108 bytes a unix socket allows.
	dir, err := os.MkdirTemp("", "snapprog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })

	// 100 columns: docker leaves the bar out below 111 and shows the sizes;
	// 120: the bar too.
	for _, width := range []int{100, 120} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			hold := filepath.Join(dir, fmt.Sprintf("hold%d", width))
			session := fmt.Sprintf("w%d", width)
			run("new-session", "-d", "-s", session, "-x", fmt.Sprint(width), "-y", "20",
				fmt.Sprintf("%s -hold %s; echo %s; exec sleep 600", demo, hold, demoEnd))

			var last []string
			seen := map[string][]int64{} // each layer's downloaded bytes as shown, in order
			capture := func() []string {
				t.Helper()
				rows := strings.Split(strings.TrimRight(run("capture-pane", "-p", "-t", session), "\n"), "\n")
				checkScreen(t, rows, width, seen)
				last = rows
				return rows
			}
			// waitFor polls the screen until want is on it. The deadline only
			// keeps a broken renderer from hanging the test.
			waitFor := func(what string, want []string) {
				t.Helper()
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if rows := capture(); strings.Join(nonEmpty(rows), "\n") == strings.Join(want, "\n") {
						return
					}
				}
				t.Fatalf("screen never showed %s:\n%s\nwant\n%s", what, strings.Join(last, "\n"), strings.Join(want, "\n"))
			}

			// Halfway: the demo holds every layer at half its download.
			want := []string{"1: Pulling from demo/app"}
			for _, l := range demoLayers {
				want = append(want, Render(Event{ID: l.id, Status: "Downloading", Current: l.total / 2, Total: l.total}, width))
			}
			waitFor("every layer halfway", want)
			if hasBar := strings.Contains(want[1], "[====="); hasBar != (width > 110) {
				t.Errorf("at %d columns the bar is shown: %v: %q", width, hasBar, want[1])
			}
			if err := os.WriteFile(hold, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			want = []string{"1: Pulling from demo/app"}
			for _, l := range demoLayers {
				want = append(want, l.id+": Pull complete")
			}
			want = append(want,
				"Digest: sha256:"+fmt.Sprintf("%064x", 11),
				"Status: Downloaded newer image for demo/app:1",
				demoEnd)
			waitFor("every layer complete", want)

			for _, l := range demoLayers {
				got := seen[l.id]
				if len(got) == 0 {
					t.Errorf("layer %s never showed its bytes", l.id)
				}
				for i := 1; i < len(got); i++ {
					if got[i] < got[i-1] {
						t.Errorf("layer %s went back: %v", l.id, got)
						break
					}
				}
			}
		})
	}
}

// checkScreen fails t unless rows are what a pull shows: no row wider than
// the terminal, each layer on at most one row, and nothing else but the
// demo's message lines. It appends each layer's downloaded bytes to seen.
func checkScreen(t *testing.T, rows []string, width int, seen map[string][]int64) {
	t.Helper()
	count := map[string]int{}
	for _, r := range nonEmpty(rows) {
		if len(r) > width-1 {
			t.Errorf("row %q fills the terminal's %d columns", r, width)
		}
		switch {
		case r == "1: Pulling from demo/app", r == demoEnd,
			strings.HasPrefix(r, "Digest: sha256:"), strings.HasPrefix(r, "Status: Downloaded newer image"):
			continue
		}
		id, status, ok := strings.Cut(r, ": ")
		known := false
		for _, l := range demoLayers {
			known = known || l.id == id
		}
		if !ok || !known {
			t.Errorf("stray row %q in\n%s", r, strings.Join(rows, "\n"))
			continue
		}
		count[id]++
		if n, ok := downloaded(status); ok {
			seen[id] = append(seen[id], n)
		}
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("layer %s on %d rows:\n%s", id, n, strings.Join(rows, "\n"))
		}
	}
}

// downloaded reads the bytes done from "Downloading [...]  1.5MB/3MB".
func downloaded(status string) (int64, bool) {
	rest, ok := strings.CutPrefix(status, "Downloading ")
	if !ok {
		return 0, false
	}
	if i := strings.LastIndex(rest, "] "); i >= 0 {
		rest = rest[i+2:]
	}
	cur, _, ok := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok {
		return 0, false
	}
	n, err := units.FromHumanSize(cur)
	return n, err == nil
}

func nonEmpty(rows []string) []string {
	var out []string
	for _, r := range rows {
		if strings.TrimSpace(r) != "" {
			out = append(out, strings.TrimRight(r, " "))
		}
	}
	return out
}

// TestPipedShowsNothing runs the demo as `demo | cat`: no progress, no
// message lines, nothing.
func TestPipedShowsNothing(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	demo := buildDemo(t)
	out, err := exec.Command(sh, "-c", demo+" | cat").CombinedOutput()
	if err != nil {
		t.Fatalf("demo | cat: %v\n%s", err, out)
	}
	if len(out) != 0 {
		t.Errorf("demo | cat wrote %q", out)
	}
}
