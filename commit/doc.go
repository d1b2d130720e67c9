// Package commit turns a container's changes into a new image:
// Commit(ctx, src, opts) pauses the source, walks it with package diff,
// writes the layer into the store, builds config, history and manifest, tags
// and resumes. It lands with the image store (see the issue "The image
// store, snap commit and snap history").
package commit
