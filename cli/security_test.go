package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"snap/container"
)

// parseSecurity reads args as run's security flags.
func parseSecurity(t *testing.T, args ...string) (container.Security, error) {
	t.Helper()
	var o container.CreateOptions
	var err error
	app := &cli.App{Flags: securityFlags(), DisableSliceFlagSeparator: true,
		Action: func(c *cli.Context) error { err = securityOptions(c, &o); return nil }}
	if rerr := app.Run(append([]string{"snap"}, args...)); rerr != nil {
		t.Fatal(rerr)
	}
	return o.Security, err
}

// TestSecurityFlagsParse: the flags read as docker's do, and a value docker
// refuses is a usage error naming it.
func TestSecurityFlagsParse(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(profile, []byte("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n"), 0o644)
	tests := []struct {
		args []string
		want container.Security
	}{
		{nil, container.Security{}},
		{[]string{"--privileged", "--read-only"}, container.Security{Privileged: true, ReadOnly: true}},
		{[]string{"--cap-add", "net_admin", "--cap-add", "CAP_SYS_TIME", "--cap-drop", "all"},
			container.Security{CapAdd: []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, CapDrop: []string{"ALL"}}},
		{[]string{"--security-opt", "no-new-privileges"}, container.Security{NoNewPrivileges: true}},
		{[]string{"--security-opt", "no-new-privileges:true"}, container.Security{NoNewPrivileges: true}},
		{[]string{"--security-opt", "no-new-privileges=false"}, container.Security{}},
		{[]string{"--security-opt", "seccomp=unconfined"}, container.Security{Seccomp: container.SeccompUnconfined}},
		{[]string{"--security-opt", "seccomp:unconfined"}, container.Security{Seccomp: container.SeccompUnconfined}},
		{[]string{"--security-opt", "seccomp=builtin"}, container.Security{}},
		{[]string{"--security-opt", "seccomp=" + profile}, container.Security{Seccomp: `{"defaultAction":"SCMP_ACT_ALLOW"}`}},
		{[]string{"--pids-limit", "10"}, container.Security{PidsLimit: 10}},
		{[]string{"--pids-limit", "-1"}, container.Security{}},
		{[]string{"--memory", "512m"}, container.Security{Memory: 512 << 20}},
		{[]string{"-m", "1g"}, container.Security{Memory: 1 << 30}},
		{[]string{"--cpus", "1.5"}, container.Security{NanoCPUs: 1_500_000_000}},
		{[]string{"--cpus", "0.01"}, container.Security{NanoCPUs: 10_000_000}},
	}
	for _, tc := range tests {
		got, err := parseSecurity(t, tc.args...)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}

	bad := []struct {
		args  []string
		usage bool
	}{
		{[]string{"--cap-add", "NET_WIZARD"}, true},
		{[]string{"--cap-drop", "bogus"}, true},
		{[]string{"--security-opt", "apparmor=unconfined"}, true},
		{[]string{"--security-opt", "seccomp"}, true},
		{[]string{"--security-opt", "no-new-privileges=maybe"}, true},
		{[]string{"--memory", "lots"}, true},
		{[]string{"--memory", "1k"}, true},
		{[]string{"--cpus", "x"}, true},
		{[]string{"--cpus", "0.0001"}, true},
		{[]string{"--cpus", "1.0000000001"}, true},
		{[]string{"--cpus", "100000"}, true},
		{[]string{"--security-opt", "seccomp=" + filepath.Join(t.TempDir(), "none.json")}, false},
	}
	for _, tc := range bad {
		_, err := parseSecurity(t, tc.args...)
		var ue usageError
		if err == nil || errors.As(err, &ue) != tc.usage {
			t.Errorf("%q: %v; want an error, a usage error: %v", tc.args, err, tc.usage)
		}
	}
}

// TestSeccompProfileNotAFile: a profile path that is not a regular file, or
// is too big, is refused at once: a FIFO hung snap in its open (SIGTERM
// could not end it), /dev/zero was read until memory ran out.
func TestSeccompProfileNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<40); err != nil { // sparse: a terabyte of nothing
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", dir, big} {
		done := make(chan error, 1)
		go func() {
			_, err := parseSecurity(t, "--security-opt", "seccomp="+p)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, errNotProfile) {
				t.Errorf("seccomp=%s: %v, want %v", p, err, errNotProfile)
			}
		case <-time.After(time.Minute): // a bound on a hang, not a timing
			t.Fatalf("seccomp=%s: still reading after a minute", p)
		}
	}
}
