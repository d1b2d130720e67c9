package container

import (
	"os"
	"testing"
)

// TestMain is also the containers' init: libcontainer re-executes the test
// binary as "init" in each new container.
func TestMain(m *testing.M) {
	InitIfAsked()
	os.Exit(m.Run())
}
