// Package e2e holds tests that drive the built snap binary as a user does,
// from a shell: the README's walk-through, real signals, and what is left
// mounted after each container command. It has no code of its own.
package e2e
