// Package history reads an image's history and renders it the way
// `docker history` does (table, --format, JSON). It lands with the image
// store, together with package commit.
package history
