package cli

import (
	"context"
	"os"
	"time"
)

// openInput opens FILE, or stdin for "" and "-", for a long read that a
// signal must be able to stop: once ctx is cancelled, a read blocked on a
// pipe or a terminal returns at once instead of waiting for input.
func openInput(ctx context.Context, name string) (*os.File, func(), error) {
	f := os.Stdin
	if name != "" && name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, nil, err
		}
	} else if fi, err := f.Stat(); err == nil && fi.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) != 0 {
		// os.Stdin reads block outside Go's poller, so no deadline can wake
		// them; the same pipe opened anew gets its own, pollable, file
		// description (the shell's stays as it was).
		if g, err := os.Open("/proc/self/fd/0"); err == nil {
			f = g
		}
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	return f, func() {
		stop()
		if f != os.Stdin {
			f.Close()
		}
	}, nil
}
