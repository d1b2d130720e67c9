//go:build !linux || !cgo || !seccomp

package container

// seccompBuiltIn: without libseccomp, libcontainer cannot apply a filter,
// so a container that needs one must not start.
const seccompBuiltIn = false
