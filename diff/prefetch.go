package diff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Small files are read ahead by workers while the writer is busy with the
// files before them: on a layer of many small files the per-file syscalls
// (stat, listxattr, open, read, close) are the whole cost, and this way they
// run on every core instead of one. Order is kept: the writer takes changes
// in walk order and waits for each file's bytes.
const (
	prefetchMax   = 64 << 10 // bigger files stream from their fd as they are written
	prefetchQueue = 256      // changes in flight; bounds memory to queue*prefetchMax
)

type pending struct {
	c     Change
	data  []byte // the file's bytes, read ahead
	err   error
	ready chan struct{} // closed when data/err are set; nil: nothing read ahead
}

func wantsPrefetch(c Change) bool {
	return c.Kind != Deleted && !c.Empty && c.Info != nil && c.Info.Mode().IsRegular() && c.Info.Size() > 0 && c.Info.Size() <= prefetchMax
}

// walkAhead runs src.Walk and the read-ahead workers, and calls fn with each
// change, in order, with its bytes when they were read ahead.
func walkAhead(ctx context.Context, src Walker, fn func(*pending) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ordered := make(chan *pending, prefetchQueue)
	work := make(chan *pending, prefetchQueue)
	var wg sync.WaitGroup
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				p.data, p.err = readSmall(p.c)
				close(p.ready)
			}
		}()
	}
	walkErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(work)
		walkErr <- src.Walk(ctx, func(c Change) error {
			// The walk may end before the writer reaches this change: keep
			// its root open until then.
			if c.tree != nil && !c.tree.acquire() {
				return fmt.Errorf("layer /%s: the walk that found it has ended", c.Path)
			}
			p := &pending{c: c}
			if wantsPrefetch(c) {
				p.ready = make(chan struct{})
				select {
				case work <- p:
				case <-ctx.Done():
					p.ready = nil
					p.done()
					return ctx.Err()
				}
			}
			select {
			case ordered <- p:
				return nil
			case <-ctx.Done():
				p.done()
				return ctx.Err()
			}
		})
	}()
	var err error
	for p := range ordered {
		if err != nil {
			p.done()
			continue // drain so the walker and workers can finish
		}
		if p.ready != nil {
			<-p.ready
		}
		if err = fn(p); err != nil {
			cancel()
		}
		p.done()
	}
	wg.Wait()
	if werr := <-walkErr; err == nil {
		err = werr
	}
	return err
}

// done waits for the read-ahead, if any, and lets go of the change's root.
func (p *pending) done() {
	if p.ready != nil {
		<-p.ready
	}
	if p.c.tree != nil {
		p.c.tree.release()
	}
}

// readSmall reads a whole small file through its raw fd.
func readSmall(c Change) ([]byte, error) {
	fd, err := openContent(c)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, c.Info.Size())
	if err := readFull(fd, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w (file shrank while being read)", err)
		}
		return nil, err
	}
	return buf, nil
}
