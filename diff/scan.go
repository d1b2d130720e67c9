package diff

import (
	"context"
	"sync"
)

// Directories are compared on several goroutines at once: comparing a tree
// with its lowers is stat and listxattr calls on both sides, file after file,
// and they wait on the kernel, not on each other. The changes are still
// yielded in walk order: each directory's scan is a job whose items name the
// jobs of its subdirectories, and one goroutine walks the jobs depth-first.

const scanWorkers = 4

type dirItem struct {
	c Change
	// emit: yield c. Otherwise c is a directory yielded only if something
	// beneath it changes (docker's ChangesDirs does the same).
	emit bool
	sub  *dirJob // the directory's own scan, for directories
}

type dirJob struct {
	scan  func(*dirJob) ([]dirItem, error)
	items []dirItem
	err   error
	done  chan struct{}
	// opaque: the directory hides everything below it (all it held in the
	// lowers is gone), so it carries an opaque marker instead of a whiteout
	// per lower entry.
	opaque bool
}

type scanPool struct {
	ctx    context.Context
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*dirJob
	closed bool
	wg     sync.WaitGroup
}

func newScanPool(ctx context.Context, workers int) *scanPool {
	p := &scanPool{ctx: ctx}
	p.cond = sync.NewCond(&p.mu)
	for range workers {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

func (p *scanPool) submit(scan func(*dirJob) ([]dirItem, error)) *dirJob {
	j := &dirJob{scan: scan, done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	p.cond.Signal()
	return j
}

func (p *scanPool) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		j := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		if j.err = p.ctx.Err(); j.err == nil {
			j.items, j.err = j.scan(j)
		}
		close(j.done)
	}
}

// stop ends the workers; jobs not started are dropped.
func (p *scanPool) stop() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}

func (j *dirJob) wait(ctx context.Context) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// emit yields the changes of a job and its subdirectories in walk order.
func (j *dirJob) emit(ctx context.Context, anc *ancestors) error {
	if err := j.wait(ctx); err != nil {
		return err
	}
	for _, it := range j.items {
		if it.sub != nil {
			if err := it.sub.wait(ctx); err != nil {
				return err
			}
			if it.sub.opaque {
				it.c.Opaque, it.emit = true, true
			}
		}
		switch {
		case it.emit:
			if err := anc.emit(it.c); err != nil {
				return err
			}
		default:
			anc.push(it.c)
		}
		if it.sub != nil {
			if err := it.sub.emit(ctx, anc); err != nil {
				return err
			}
			anc.pop(it.c.Path)
		}
	}
	return nil
}
