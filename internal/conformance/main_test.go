package conformance

import (
	"os"
	"testing"

	"snap/container"
)

// TestMain is also the containers' init: libcontainer re-executes the test
// binary as "init" in each new container.
func TestMain(m *testing.M) {
	container.InitIfAsked()
	os.Exit(m.Run())
}
