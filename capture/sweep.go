package capture

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"snap/container"
)

// stepPrefix names the containers a capture makes, with the capture's PID:
// a capture killed (kill -9) before it removed its step's container leaves
// one behind, its process still running, as a killed docker build client
// leaves the daemon's. The next capture removes those whose capture is gone.
const stepPrefix = "snap-capture-"

// create makes one of the capture's containers (see stepPrefix).
func (c *run) create(o container.CreateOptions) (*container.Meta, error) {
	b := make([]byte, 4)
	rand.Read(b)
	o.Name = fmt.Sprintf("%s%d-%s", stepPrefix, os.Getpid(), hex.EncodeToString(b))
	return c.m.Create(o)
}

// sweep removes the containers of captures no longer running. A PID that
// lives is left alone, whoever has it now: a container is removed only when
// no process could still be its capture.
func (c *run) sweep() {
	metas, err := c.m.List()
	if err != nil {
		return // a listing problem is not the capture's to report
	}
	for _, meta := range metas {
		rest, ok := strings.CutPrefix(meta.Name, stepPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if err := c.m.Remove(meta, true); err == nil {
			fmt.Fprintf(c.out, "Removed %s, left by a capture that was killed\n", meta.Name)
		}
	}
}
