package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// LogOptions are docker logs' flags that snap takes.
type LogOptions struct {
	// Follow keeps writing what the container writes until its run ends.
	Follow bool
	// Tail, when not negative, starts that many lines before the end.
	Tail int
}

// Logs writes a detached container's output (its log, which its monitor
// writes) to w, as docker logs.
func (m *Manager) Logs(ctx context.Context, meta *Meta, w io.Writer, o LogOptions) error {
	var done chan error
	if o.Follow {
		// Started first: whatever the run writes before it ends is in
		// the log by the time waitRun returns.
		done = make(chan error, 1)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, err := m.waitRun(wctx, meta)
			done <- err
		}()
	}
	f, err := os.Open(m.Log(meta))
	if errors.Is(err, fs.ErrNotExist) {
		if !o.Follow {
			return nil // never started detached: no output kept
		}
		// The monitor makes the log as the run starts.
		if err := <-done; err != nil {
			return err
		}
		if f, err = os.Open(m.Log(meta)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", meta.Name, err)
	}
	defer f.Close()
	if o.Tail >= 0 {
		if err := seekTail(f, o.Tail); err != nil {
			return fmt.Errorf("container %s: log: %w", meta.Name, err)
		}
	}
	if _, err := io.Copy(w, f); err != nil || !o.Follow {
		return err
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			_, err = io.Copy(w, f) // what came since the last look
			return err
		case <-t.C:
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
		}
	}
}

// seekTail puts f's offset at the start of its last n lines; a last line
// without its newline counts.
func seekTail(f *os.File, n int) error {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil || n == 0 {
		return err
	}
	buf := make([]byte, 32<<10)
	pos, seen := end, 0
	for pos > 0 {
		size := min(int64(len(buf)), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil {
			return err
		}
		for i := size - 1; i >= 0; i-- {
			// The newline that ends the last line starts no line.
			if buf[i] != '\n' || pos+i == end-1 {
				continue
			}
			if seen++; seen == n {
				_, err := f.Seek(pos+i+1, io.SeekStart)
				return err
			}
		}
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
