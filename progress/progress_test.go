package progress

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/console"
)

// screen plays what the renderer wrote on a terminal width columns wide
// (with the tty's \n as \r\n) and returns the rows and where the cursor
// ended. It fails t if a row wraps or a sequence is one the renderer should
// not write.
func screen(t *testing.T, out string, width int) (rows []string, row, col int) {
	t.Helper()
	var grid [][]rune
	for i := 0; i < len(out); {
		for row >= len(grid) {
			grid = append(grid, nil)
		}
		switch c := out[i]; c {
		case '\n':
			row, col = row+1, 0
			i++
		case '\r':
			col = 0
			i++
		case 0x1b:
			end := strings.IndexAny(out[i:], "ABK")
			if end < 0 || out[i+1] != '[' {
				t.Fatalf("unknown escape at %d: %q", i, out[i:])
			}
			arg, op := out[i+2:i+end], out[i+end]
			i += end + 1
			n, err := strconv.Atoi(arg)
			if err != nil {
				t.Fatalf("escape %q: %v", arg+string(op), err)
			}
			switch {
			case op == 'A':
				row = max(row-n, 0)
			case op == 'B':
				row += n
			case op == 'K' && n == 2:
				grid[row] = nil
			default:
				t.Fatalf("unknown escape %q", arg+string(op))
			}
		default:
			if c < 0x20 {
				t.Fatalf("control byte %#x at %d", c, i)
			}
			if col >= width {
				t.Fatalf("row %d wraps at width %d: %q", row, width, string(grid[row]))
			}
			for len(grid[row]) <= col {
				grid[row] = append(grid[row], ' ')
			}
			grid[row][col] = rune(c)
			col++
			i++
		}
	}
	for _, g := range grid {
		rows = append(rows, strings.TrimRight(string(g), " "))
	}
	for len(rows) > 0 && rows[len(rows)-1] == "" {
		rows = rows[:len(rows)-1]
	}
	return rows, row, col
}

func TestBarAsDocker(t *testing.T) {
	full := "[" + strings.Repeat("=", 50) + ">] "
	half := "[" + strings.Repeat("=", 25) + ">" + strings.Repeat(" ", 25) + "] "
	tests := []struct {
		name           string
		current, total int64
		short, long    string // at 100 and 200 columns
	}{
		// The first four are moby's TestRenderTUIProgress cases.
		{"no progress", 0, 0, "", ""},
		{"current alone", 1, 0, "      1B", "      1B"},
		{"half", 50, 100, "     50B/100B", half + "     50B/100B"},
		{"current past total", 50, 40, "     50B", full + "     50B"},
		{"megabytes", 12_300_000, 45_600_000, "  12.3MB/45.6MB",
			"[" + strings.Repeat("=", 13) + ">" + strings.Repeat(" ", 37) + "]   12.3MB/45.6MB"},
		{"done", 3_000_000, 3_000_000, "     3MB/3MB", full + "     3MB/3MB"},
		{"negative current does not panic", -5, 100, "     -5B/100B", "[>" + strings.Repeat(" ", 50) + "]      -5B/100B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Bar(tc.current, tc.total, 100); got != tc.short {
				t.Errorf("width 100: %q, want %q", got, tc.short)
			}
			if got := Bar(tc.current, tc.total, 200); got != tc.long {
				t.Errorf("width 200: %q, want %q", got, tc.long)
			}
		})
	}
	// Docker draws the bar only above 110 columns.
	if got := Bar(1, 2, 110); strings.Contains(got, "[") {
		t.Errorf("width 110 has a bar: %q", got)
	}
	if got := Bar(1, 2, 111); !strings.Contains(got, "[") {
		t.Errorf("width 111 has no bar: %q", got)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		ev   Event
		want string
	}{
		{Event{ID: "0a1b2c3d4e5f", Status: "Waiting"}, "0a1b2c3d4e5f: Waiting"},
		{Event{ID: "0a1b2c3d4e5f", Status: "Downloading", Current: 12_300_000, Total: 45_600_000},
			"0a1b2c3d4e5f: Downloading [" + strings.Repeat("=", 13) + ">" + strings.Repeat(" ", 37) + "]   12.3MB/45.6MB"},
		{Event{ID: "0a1b2c3d4e5f", Status: "Mounted from team/base"}, "0a1b2c3d4e5f: Mounted from team/base"},
		{Event{Status: "no id"}, "no id"},
		{Event{ID: "a\x1b[2J", Status: "evil\r\nstatus"}, "a?[2J: evil??status"},
	}
	for _, tc := range tests {
		if got := Render(tc.ev, 200); got != tc.want {
			t.Errorf("Render(%+v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

// fakeTime drives a Terminal's clock and timer by hand.
type fakeTime struct {
	now     time.Time
	pending func()
}

func newFake(t *Terminal) *fakeTime {
	f := &fakeTime{now: time.Unix(1e9, 0)}
	t.now = func() time.Time { return f.now }
	t.afterFunc = func(_ time.Duration, fn func()) func() bool {
		f.pending = fn
		return func() bool { f.pending = nil; return true }
	}
	return f
}

// fire runs the pending timer, as time.AfterFunc would.
func (f *fakeTime) fire(t *testing.T) {
	t.Helper()
	if f.pending == nil {
		t.Fatal("no timer pending")
	}
	fn := f.pending
	f.pending = nil
	fn()
}

func TestTerminalWritesDockersSequences(t *testing.T) {
	var buf bytes.Buffer
	term := NewTerminal(&buf, 200)
	newFake(term)
	term.Update(Event{ID: "a", Status: "Waiting"})
	term.Update(Event{ID: "b", Status: "Waiting"})
	term.Update(Event{ID: "a", Status: "Pull complete"})
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	// What moby's displayJSONMessages writes for the same messages.
	want := "\n\x1b[1A\x1b[2K\ra: Waiting\r\x1b[1B" +
		"\n\x1b[1A\x1b[2K\rb: Waiting\r\x1b[1B" +
		"\x1b[2A\x1b[2K\ra: Pull complete\r\x1b[2B"
	if got := buf.String(); got != want {
		t.Errorf("wrote\n%q\nwant\n%q", got, want)
	}
}

func TestTerminalLinesInFirstSeenOrder(t *testing.T) {
	var buf bytes.Buffer
	term := NewTerminal(&buf, 200)
	newFake(term)
	term.Line("1: Pulling from team/app")
	for _, id := range []string{"cccccccccccc", "aaaaaaaaaaaa", "bbbbbbbbbbbb"} {
		term.Update(Event{ID: id, Status: "Pulling fs layer"})
	}
	term.Update(Event{ID: "aaaaaaaaaaaa", Status: "Downloading", Current: 50, Total: 100})
	term.Update(Event{ID: "cccccccccccc", Status: "Already exists"})
	term.Update(Event{ID: "bbbbbbbbbbbb", Status: "Waiting"})
	term.Update(Event{ID: "aaaaaaaaaaaa", Status: "Pull complete"})
	term.Update(Event{ID: "bbbbbbbbbbbb", Status: "Pull complete"})
	term.Line("Digest: sha256:" + strings.Repeat("0", 64))
	// After a message line docker starts a new block: a known ID gets a
	// new line below it.
	term.Update(Event{ID: "aaaaaaaaaaaa", Status: "Pushed"})
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	rows, row, col := screen(t, buf.String(), 200)
	want := []string{
		"1: Pulling from team/app",
		"cccccccccccc: Already exists",
		"aaaaaaaaaaaa: Pull complete",
		"bbbbbbbbbbbb: Pull complete",
		"Digest: sha256:" + strings.Repeat("0", 64),
		"aaaaaaaaaaaa: Pushed",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if row != len(want) || col != 0 {
		t.Errorf("cursor at %d,%d, want below all lines at %d,0", row, col, len(want))
	}
}

func TestTerminalLinesNeverWrap(t *testing.T) {
	for _, width := range []int{20, 60, 111, 120} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			var buf bytes.Buffer
			term := NewTerminal(&buf, width)
			newFake(term)
			term.Update(Event{ID: "0a1b2c3d4e5f", Status: "Downloading", Current: 12_300_000, Total: 45_600_000})
			term.Update(Event{ID: "1b2c3d4e5f60", Status: "Mounted from a/very/long/repository/name/that/goes/on"})
			if err := term.Close(); err != nil {
				t.Fatal(err)
			}
			rows, _, _ := screen(t, buf.String(), width) // fails on a wrap
			if len(rows) != 2 {
				t.Fatalf("rows %q, want 2", rows)
			}
			for _, r := range rows {
				if len(r) > width-1 {
					t.Errorf("row %q is %d wide, want at most %d", r, len(r), width-1)
				}
			}
		})
	}
}

func TestThrottleNeverDropsTheLastStatus(t *testing.T) {
	var buf bytes.Buffer
	term := NewTerminal(&buf, 100)
	clock := newFake(term)
	show := func() string {
		t.Helper()
		rows, _, _ := screen(t, buf.String(), 100)
		return strings.Join(rows, "\n")
	}
	dl := func(id string, cur int64) Event {
		return Event{ID: id, Status: "Downloading", Current: cur, Total: 1000}
	}

	term.Update(dl("a", 100)) // first appearance: drawn
	before := buf.Len()
	for cur := int64(101); cur <= 300; cur++ { // within the same 100 ms: throttled
		term.Update(dl("a", cur))
	}
	if buf.Len() != before {
		t.Fatalf("throttled updates drew: %q", buf.String()[before:])
	}
	if got := show(); !strings.HasSuffix(got, "100B/1kB") {
		t.Fatalf("screen %q, want 100B/1kB", got)
	}

	// The transfer goes quiet: the timer draws its newest count.
	clock.now = clock.now.Add(throttle)
	clock.fire(t)
	if got := show(); !strings.HasSuffix(got, "300B/1kB") {
		t.Fatalf("after the timer %q, want 300B/1kB", got)
	}

	// A status change is drawn at once, however soon.
	term.Update(dl("a", 301))
	term.Update(Event{ID: "a", Status: "Verifying Checksum"})
	if got := show(); got != "a: Verifying Checksum" {
		t.Fatalf("status change not drawn: %q", got)
	}

	// Reaching the total is drawn at once.
	term.Update(Event{ID: "a", Status: "Extracting", Current: 1, Total: 1000})
	term.Update(Event{ID: "a", Status: "Extracting", Current: 2, Total: 1000})
	term.Update(Event{ID: "a", Status: "Extracting", Current: 1000, Total: 1000})
	if got := show(); !strings.HasSuffix(got, "1kB/1kB") {
		t.Fatalf("completion not drawn: %q", got)
	}

	// A throttled count is drawn by a message line, which freezes the block.
	term.Update(Event{ID: "b", Status: "Pushing", Current: 1, Total: 1000})
	term.Update(Event{ID: "b", Status: "Pushing", Current: 2, Total: 1000})
	term.Line("done")
	if got := show(); !strings.Contains(got, "b: Pushing       2B/1kB\ndone") {
		t.Fatalf("Line did not draw the last count first: %q", got)
	}

	// And Close draws what is still throttled.
	term.Update(Event{ID: "c", Status: "Pushing", Current: 1, Total: 1000})
	term.Update(Event{ID: "c", Status: "Pushing", Current: 2, Total: 1000})
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	if clock.pending != nil {
		t.Error("Close left a timer pending")
	}
	if got := show(); !strings.HasSuffix(got, "c: Pushing       2B/1kB") {
		t.Fatalf("Close did not draw the last count: %q", got)
	}
	after := buf.Len()
	term.Update(Event{ID: "c", Status: "Pushed"})
	term.Line("late")
	if buf.Len() != after {
		t.Errorf("wrote after Close: %q", buf.String()[after:])
	}
}

// The timer goes quiet by itself when nothing is throttled, and comes back
// for what still waits.
func TestThrottleTimerRearmsOnlyForWaitingLines(t *testing.T) {
	var buf bytes.Buffer
	term := NewTerminal(&buf, 100)
	clock := newFake(term)
	term.Update(Event{ID: "a", Status: "Pushing", Current: 1, Total: 10})
	clock.now = clock.now.Add(throttle / 2)
	term.Update(Event{ID: "b", Status: "Pushing", Current: 1, Total: 10})
	term.Update(Event{ID: "a", Status: "Pushing", Current: 2, Total: 10}) // a due in 50 ms
	term.Update(Event{ID: "b", Status: "Pushing", Current: 2, Total: 10}) // b due in 100 ms
	clock.now = clock.now.Add(throttle / 2)
	clock.fire(t) // draws a; b still waits
	rows, _, _ := screen(t, buf.String(), 100)
	if want := []string{"a: Pushing       2B/10B", "b: Pushing       1B/10B"}; strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Fatalf("screen %q, want %q", rows, want)
	}
	clock.now = clock.now.Add(throttle / 2)
	clock.fire(t) // draws b
	if clock.pending != nil {
		t.Error("timer armed with nothing waiting")
	}
	rows, _, _ = screen(t, buf.String(), 100)
	if rows[1] != "b: Pushing       2B/10B" {
		t.Fatalf("b not drawn: %q", rows)
	}
}

func TestTerminalConcurrentUpdates(t *testing.T) {
	var buf bytes.Buffer
	term := NewTerminal(&buf, 200) // the real clock and timer
	const items, rounds = 24, 300
	var wg sync.WaitGroup
	for i := range items {
		wg.Go(func() {
			id := fmt.Sprintf("%012x", i)
			for k := range int64(rounds) {
				term.Update(Event{ID: id, Status: "Downloading", Current: k, Total: rounds})
			}
			term.Update(Event{ID: id, Status: "Pull complete"})
		})
	}
	wg.Wait()
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	rows, row, _ := screen(t, buf.String(), 200)
	if len(rows) != items || row != items {
		t.Fatalf("%d rows, cursor on row %d, want %d: %q", len(rows), row, items, rows)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		id, status, ok := strings.Cut(r, ": ")
		if !ok || status != "Pull complete" || seen[id] {
			t.Errorf("row %q", r)
		}
		seen[id] = true
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, os.ErrClosed
}

func TestTerminalStopsWritingAfterAnError(t *testing.T) {
	w := &failWriter{}
	term := NewTerminal(w, 80)
	term.Update(Event{ID: "a", Status: "Waiting"})
	term.Update(Event{ID: "b", Status: "Waiting"})
	term.Line("x")
	err := term.Close()
	if err == nil || w.n != 1 {
		t.Errorf("Close() = %v after %d writes, want an error after 1", err, w.n)
	}
}

func TestForRendersOnlyOnATerminal(t *testing.T) {
	// Not a file, a pipe: nothing at all.
	var buf bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, out := range []any{&buf, w} {
		d := For(out.(interface{ Write([]byte) (int, error) }))
		if _, ok := d.(*Terminal); ok {
			t.Errorf("For(%T) is a Terminal", out)
		}
		d.Update(Event{ID: "a", Status: "Downloading", Current: 1, Total: 2})
		d.Line("Digest: sha256:x")
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q to a buffer", buf.String())
	}
	w.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(r); err != nil || got.Len() != 0 {
		t.Errorf("wrote %q to a pipe (%v)", got.String(), err)
	}
	Discard.Update(Event{ID: "a"})

	// A terminal: its width is the pty's.
	pty, slave, err := console.NewPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer pty.Close()
	if err := pty.Resize(console.WinSize{Width: 123, Height: 20}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(slave, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := For(f)
	term, ok := d.(*Terminal)
	if !ok {
		t.Fatalf("For(pty) is %T, want a Terminal", d)
	}
	if term.width != 123 {
		t.Errorf("width %d, want the pty's 123", term.width)
	}
	if err := term.Close(); err != nil {
		t.Error(err)
	}
}
