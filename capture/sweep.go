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

// stepPrefix names the containers a capture makes, after the capture's
// process: its PID namespace, PID and start time (snap-capture-NS-PID-START-
// RAND). A capture killed (kill -9) before it removed its step's container
// leaves one behind, its process still running, as a killed docker build
// client leaves the daemon's; the next capture removes those whose capture
// is gone.
const stepPrefix = "snap-capture-"

// create makes one of the capture's containers (see stepPrefix).
func (c *run) create(o container.CreateOptions) (*container.Meta, error) {
	b := make([]byte, 4)
	rand.Read(b)
	pid := os.Getpid()
	o.Name = fmt.Sprintf("%s%d-%d-%d-%s", stepPrefix, pidNamespace(), pid, startTime(pid), hex.EncodeToString(b))
	return c.m.Create(o)
}

// sweep removes the containers of captures no longer running: made in this
// PID namespace (another's PIDs cannot be seen from here, so its captures
// are left alone) by a process that is gone, or whose PID another process
// has since (its start time differs).
func (c *run) sweep() {
	metas, err := c.m.List()
	if err != nil {
		return // a listing problem is not the capture's to report
	}
	ns := pidNamespace()
	for _, meta := range metas {
		rest, ok := strings.CutPrefix(meta.Name, stepPrefix)
		if !ok {
			continue
		}
		f := strings.Split(rest, "-")
		if len(f) != 4 {
			continue
		}
		n, err1 := strconv.ParseUint(f[0], 10, 64)
		pid, err2 := strconv.Atoi(f[1])
		start, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || n == 0 || n != ns || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if alive := !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH); alive && startTime(pid) == start {
			continue
		}
		if err := c.m.Remove(meta, true); err == nil {
			fmt.Fprintf(c.out, "Removed %s, left by a capture that was killed\n", meta.Name)
		}
	}
}

// pidNamespace is the inode of this process's PID namespace; 0 if unknown.
func pidNamespace() uint64 {
	var st syscall.Stat_t
	if syscall.Stat("/proc/self/ns/pid", &st) != nil {
		return 0
	}
	return st.Ino
}

// startTime is a process's start time in clock ticks after boot (field 22
// of /proc/PID/stat); 0 if unknown.
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// the fields after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}
