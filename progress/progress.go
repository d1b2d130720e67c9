// Package progress carries per-item transfer progress (a layer, a config)
// from the library to whoever shows it.
package progress

// Event is one change in one item's transfer.
type Event struct {
	ID      string // the line's key: a layer's short digest, as docker shows it
	Status  string
	Current int64
	Total   int64
}

// Sink receives events, from several goroutines at once.
type Sink interface{ Update(Event) }

type discard struct{}

func (discard) Update(Event) {}

// Discard drops every event.
var Discard Sink = discard{}
