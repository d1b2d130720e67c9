//go:build linux && cgo && seccomp

package container

// seccompBuiltIn: libcontainer was built with libseccomp and applies the
// filters it is given.
const seccompBuiltIn = true
