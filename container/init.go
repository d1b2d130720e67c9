package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins the namespaces before Go starts
)

// InitIfAsked makes this process a container's init when libcontainer
// re-executed it as "<binary> init" in the new namespaces, or a detached
// container's monitor when Start re-executed it as one; it never returns
// then. Every binary that starts containers (snap, and test binaries) calls
// it first thing.
func InitIfAsked() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	monitorIfAsked()
}
