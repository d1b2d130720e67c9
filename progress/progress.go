// Package progress renders per-item transfer progress (a layer, a config)
// the way `docker pull` and `docker push` do on a terminal: one line per
// item, redrawn in place, with docker's bar and sizes. On anything that is
// not a terminal it renders nothing, so a piped command stays quiet.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/mattn/go-runewidth"
	"golang.org/x/sys/unix"
)

// Event is one change in one item's transfer (a layer, the config).
type Event struct {
	// ID is the line's key; docker shows a layer's short digest (12 hex
	// of the blob digest).
	ID string
	// Status is docker's word for the step ("Waiting", "Downloading",
	// "Pull complete", "Pushed", "Mounted from team/base", ...).
	Status string
	// Current is the bytes done; with Total 0 it is shown alone.
	Current int64
	// Total is the bytes in all; 0 when unknown.
	Total int64
}

// Sink receives events. The registry library calls it from several
// goroutines at once, so every Sink must be safe for concurrent use.
type Sink interface{ Update(Event) }

// Display is what a command hands its progress to: a Sink, whole message
// lines ("1: Pulling from team/app", "Digest: sha256:..."), and an end.
type Display interface {
	Sink
	// Line prints s as a line of its own below the progress lines drawn so
	// far; the items after it start a new block, as docker's do.
	Line(s string)
	// Close draws the final state and leaves the cursor below every line.
	Close() error
}

// Discard is a Sink that drops everything.
var Discard Sink = discard{}

type discard struct{}

func (discard) Update(Event) {}
func (discard) Line(string)  {}
func (discard) Close() error { return nil }

// For returns a Terminal on w when w is an *os.File that is a terminal and
// a Display that writes nothing otherwise: the issue wants nothing at all
// when the output is piped, not docker's plain-text status lines.
func For(w io.Writer) Display {
	f, ok := w.(*os.File)
	if !ok {
		return discard{}
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return discard{}
	}
	return NewTerminal(w, int(ws.Col))
}

// ANSI sequences, the ones docker's jsonmessage writes.
const (
	eraseLine  = "\x1b[2K"
	cursorUp   = "\x1b[%dA"
	cursorDown = "\x1b[%dB"
)

// throttle is how often one line's byte counts are redrawn; docker's daemon
// rate-limits its progress messages to the same 100 ms.
const throttle = 100 * time.Millisecond

// docker draws the bar only on terminals wider than this.
const barMinWidth = 110

// Terminal renders events to a terminal: one line per ID in first-seen
// order, redrawn in place with ANSI cursor movement as docker's jsonmessage
// does. It is safe for concurrent use.
type Terminal struct {
	mu     sync.Mutex
	w      io.Writer
	width  int
	lines  []*line // the current block, first-seen order; the cursor rests below it
	index  map[string]int
	closed bool
	err    error // the first write error; nothing is written after it

	// Injected by the tests so that throttling is tested without timing.
	now       func() time.Time
	afterFunc func(time.Duration, func()) func() bool
	stopTimer func() bool // non-nil while a flush is pending
}

type line struct {
	ev    Event     // the newest event
	drawn Event     // what is on the screen
	last  time.Time // when it was drawn
	dirty bool      // ev is newer than drawn
}

// NewTerminal renders events to w, which is a terminal width columns wide
// (0: unknown, docker's 200). Item lines are cut to width-1 columns so that
// they never wrap: a wrapped line would break the cursor arithmetic.
func NewTerminal(w io.Writer, width int) *Terminal {
	if width <= 0 {
		width = 200
	}
	return &Terminal{
		w:     w,
		width: width,
		index: map[string]int{},
		now:   time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
	}
}

// Update records ev and redraws its line. A line's first appearance and
// every change of its status are drawn at once, as is a transfer reaching
// its total; byte counts in between are drawn at most every 100 ms, and a
// timer draws the newest one when no further event comes.
func (t *Terminal) Update(ev Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	now := t.now()
	i, ok := t.index[ev.ID]
	if !ok {
		i = len(t.lines)
		t.index[ev.ID] = i
		t.lines = append(t.lines, &line{ev: ev})
		t.write("\n")
		t.draw(i, now)
		return
	}
	l := t.lines[i]
	l.ev = ev
	switch {
	case ev.Status != l.drawn.Status,
		ev.Total > 0 && ev.Current >= ev.Total,
		now.Sub(l.last) >= throttle:
		t.draw(i, now)
	default:
		l.dirty = true
		t.arm(throttle - now.Sub(l.last))
	}
}

// Line prints s on a line of its own below the item lines, as docker prints
// a message without progress; the item lines above are drawn in their final
// state first and are not touched again. s is not cut: it is never redrawn,
// so wrapping does no harm.
func (t *Terminal) Line(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.flush(true)
	t.lines, t.index = nil, map[string]int{}
	t.write(sanitize(s) + "\n")
}

// Close draws every line in its final state. The cursor is already below
// all lines. It returns the first error writing to the terminal.
func (t *Terminal) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.err
	}
	t.closed = true
	if t.stopTimer != nil {
		t.stopTimer()
		t.stopTimer = nil
	}
	t.flush(true)
	return t.err
}

// arm makes sure a flush runs in d, so that a throttled line is drawn even
// when its transfer goes quiet.
func (t *Terminal) arm(d time.Duration) {
	if t.stopTimer != nil {
		return
	}
	t.stopTimer = t.afterFunc(d, t.tick)
}

func (t *Terminal) tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopTimer = nil
	if t.closed {
		return
	}
	t.flush(false)
}

// flush draws the dirty lines: all of them, or (all false) those whose
// throttle has run out, arming the timer again for the rest.
func (t *Terminal) flush(all bool) {
	now := t.now()
	var next time.Duration = -1
	for i, l := range t.lines {
		if !l.dirty {
			continue
		}
		if wait := throttle - now.Sub(l.last); !all && wait > 0 {
			if next < 0 || wait < next {
				next = wait
			}
			continue
		}
		t.draw(i, now)
	}
	if next >= 0 {
		t.arm(next)
	}
}

// draw redraws line i of the block in place, as docker does: up to it,
// erase, write, back down below the block.
func (t *Terminal) draw(i int, now time.Time) {
	l := t.lines[i]
	up := len(t.lines) - i
	text := runewidth.Truncate(Render(l.ev, t.width), t.width-1, "")
	t.write(fmt.Sprintf(cursorUp, up) + eraseLine + "\r" + text + "\r" + fmt.Sprintf(cursorDown, up))
	l.drawn, l.last, l.dirty = l.ev, now, false
}

func (t *Terminal) write(s string) {
	if t.err != nil {
		return
	}
	if _, err := io.WriteString(t.w, s); err != nil {
		t.err = fmt.Errorf("progress: %w", err)
	}
}

// Render is ev's line as docker prints it on a terminal width columns wide:
// "<id>: <status> <progress>", without the cut to the width.
func Render(ev Event, width int) string {
	var b strings.Builder
	if ev.ID != "" {
		b.WriteString(sanitize(ev.ID))
		b.WriteString(": ")
	}
	b.WriteString(sanitize(ev.Status))
	if p := Bar(ev.Current, ev.Total, width); p != "" {
		b.WriteString(" ")
		b.WriteString(p)
	}
	return b.String()
}

// Bar is docker's JSONProgress text for current of total bytes: a 50-wide
// bar when the terminal is wider than 110 columns, then the sizes in
// go-units' HumanSize, the total left out when it is unknown or when
// current has passed it. Docker's time-left estimate is left out: its
// daemon never sends the start time that estimate needs for a pull or push.
func Bar(current, total int64, width int) string {
	if current <= 0 && total <= 0 {
		return ""
	}
	if total <= 0 {
		return fmt.Sprintf("%8v", units.HumanSize(float64(current)))
	}
	var bar string
	if width > barMinWidth {
		// Clamped both ways: a negative count would panic in strings.Repeat.
		done := min(max(int(float64(current)/float64(total)*100)/2, 0), 50)
		bar = "[" + strings.Repeat("=", done) + ">" + strings.Repeat(" ", 50-done) + "] "
	}
	cur := units.HumanSize(float64(current))
	if current > total {
		return bar + fmt.Sprintf("%8v", cur)
	}
	return bar + fmt.Sprintf("%8v/%v", cur, units.HumanSize(float64(total)))
}

// sanitize keeps control characters (a registry's text can carry any) from
// moving the cursor behind the renderer's back.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
