package commit

import (
	"time"

	"snap/compression"
	"snap/store"
)

// tags is opts.Tag as the image's tags, checked before anything is
// written: nil for none.
func (o Options) tags() ([]string, error) {
	if o.Tag == "" {
		return nil, nil
	}
	ref, err := store.ParseRef(o.Tag)
	if err != nil {
		return nil, err
	}
	return []string{ref}, nil
}

// layerCompression is the layer's compression: gzip unless one is chosen,
// as docker's layers are.
func (o Options) layerCompression() compression.Compression {
	if o.Compression == "" {
		return compression.Gzip
	}
	return o.Compression
}

// createdAt is the image's created time: SourceDateEpoch's when it is set,
// so the same tree gives the same image ID, else the clock's.
func (o Options) createdAt() time.Time {
	if o.SourceDateEpoch != nil {
		return o.SourceDateEpoch.UTC()
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	return now().UTC()
}
