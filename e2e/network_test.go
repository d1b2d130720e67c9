package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"snap/internal/fixtures"
)

// TestNetworkModes: --network host reaches a TCP server on the host's
// loopback and gets the host's resolv.conf, hosts and hostname, as docker's
// host mode; --network none and the default (none) have only lo and do not
// reach it; a mode snap lacks is a usage error naming it.
func TestNetworkModes(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	greeting := "snap-net-" + strconv.Itoa(os.Getpid())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greeting)
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dial := "busybox nc 127.0.0.1 " + port + " </dev/null"

	if out, errs, code := e.snap("run", "--rm", "--network", "host", "base:1", "sh", "-c", dial); code != 0 || out != greeting+"\n" {
		t.Errorf("--network host: %q exit %d %s, want the server's greeting", out, code, errs)
	}
	for _, flags := range [][]string{{"--network", "none"}, {"--net=none"}, nil} {
		args := append(append([]string{"run", "--rm"}, flags...), "base:1", "sh", "-c", dial+"; echo; ls /sys/class/net")
		if out, errs, _ := e.snap(args...); strings.Contains(out, greeting) || !strings.HasSuffix(out, "\nlo\n") {
			t.Errorf("%v: %q %s: want no connection and only lo", flags, out, errs)
		}
	}

	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.must("run", "--rm", "--network", "host", "base:1", "cat", f); got != string(want) {
			t.Errorf("--network host: %s is %q, the host's is %q", f, got, want)
		}
	}
	if got := e.must("run", "--rm", "--network", "host", "base:1", "sh", "-c", "cat /etc/hostname; echo $HOSTNAME"); got != hostname+"\n"+hostname+"\n" {
		t.Errorf("--network host: hostname %q, want the host's %s", got, hostname)
	}
	// Nothing of the host mode reaches a commit.
	e.must("run", "--name", "nethost", "--network", "host", "base:1", "sh", "-c", "echo x > /f")
	if out := e.must("diff", "nethost"); out != "A /f\n" {
		t.Errorf("diff after a host-network run: %q", out)
	}
	e.must("create", "--name", "netnone", "base:1", "true")
	for name, want := range map[string]string{"nethost": "host", "netnone": "none"} {
		if got := e.must("inspect", "--format", "{{.HostConfig.NetworkMode}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", name); got != want+" "+want+"\n" {
			t.Errorf("inspect %s: network %q, want %s as docker's", name, got, want)
		}
	}

	for _, bad := range []string{"bridge", "container:x", "nat"} {
		_, errs, code := e.snap("run", "--rm", "--network", bad, "base:1", "true")
		if code != 2 || !strings.Contains(errs, fmt.Sprintf("%q", bad)) {
			t.Errorf("--network %q: exit %d %q, want a usage error naming it", bad, code, errs)
		}
	}
}

// TestCommitWithHostBindMount is moby's: a commit after a file bind mount
// runs, and the bind target is not in it.
func TestCommitWithHostBindMount(t *testing.T) {
	e := newEnv(t)
	e.must("run", "--name", "bind-commit", "-v", "/dev/null:/winning", "base:1", "true")
	e.must("commit", "bind-commit", "bindtest:1")
	e.must("run", "--rm", "bindtest:1", "true")
	if out := e.must("diff", "bind-commit"); out != "" {
		t.Errorf("diff after a file bind: %q", out)
	}
	if _, _, code := e.snap("run", "--rm", "bindtest:1", "test", "-e", "/winning"); code == 0 {
		t.Error("the bind target is in the commit")
	}
}

// TestCommitEnvAsDocker is moby's TestCommitChange and TestCommitInheritsEnv
// on Env: the same runs and commits in docker and in snap, on the same base,
// give the same committed Env, with no HOSTNAME in it, and the same
// WorkingDir (none where neither the image nor the run names one).
func TestCommitEnvAsDocker(t *testing.T) {
	e := newEnv(t)
	require(t, fixtures.DockerAvailable() == nil, "a docker engine")
	if err := fixtures.EnsureBaseImage(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		from, to string
		env      []string
		changes  []string
	}{
		{"base", "env1", []string{"FOO=bar"}, []string{"ENV DEBUG true", "ENV test 1", "ENV PATH /foo"}},
		{"env1", "env2", []string{"test=2", "A=1"}, nil},
		{"env2", "env3", nil, nil},
	}
	prefix := "snap-e2e-env-" + strconv.Itoa(os.Getpid())
	defer fixtures.Docker("rmi", "-f", prefix+"-env1:1", prefix+"-env2:1", prefix+"-env3:1")
	for _, s := range steps {
		from := prefix + "-" + s.from + ":1"
		if s.from == "base" {
			from = fixtures.BaseImage
		}
		name := prefix + "-" + s.to
		var envFlags []string
		for _, v := range s.env {
			envFlags = append(envFlags, "-e", v)
		}
		run := func(name, from string) []string {
			return append(append([]string{"run", "--name", name}, envFlags...), from, "/bin/true") // PATH=/foo has no true
		}
		if _, err := fixtures.Docker(run(name, from)...); err != nil {
			t.Fatal(err)
		}
		commit := []string{"commit"}
		for _, c := range s.changes {
			commit = append(commit, "-c", c)
		}
		_, err := fixtures.Docker(append(commit, name, prefix+"-"+s.to+":1")...)
		fixtures.Docker("rm", "-f", name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := fixtures.Docker("image", "inspect", "--format", "{{json .Config.Env}}", prefix+"-"+s.to+":1")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		if err := json.Unmarshal([]byte(b), &want); err != nil {
			t.Fatal(err)
		}
		wantWd, err := fixtures.Docker("image", "inspect", "--format", "{{json .Config.WorkingDir}}", prefix+"-"+s.to+":1")
		if err != nil {
			t.Fatal(err)
		}

		e.must(run(s.to, s.from+":1")...)
		e.must(append(commit, s.to, s.to+":1")...)
		var got []string
		if err := json.Unmarshal([]byte(e.must("inspect", "--format", "{{json .Config.Env}}", s.to+":1")), &got); err != nil {
			t.Fatal(err)
		}
		// The same variables: their order is not docker's to keep (its
		// CLI 28 passes the -e values through a map, and they come out in
		// either order from one run to the next).
		if strings.Join(slices.Sorted(slices.Values(got)), " ") != strings.Join(slices.Sorted(slices.Values(want)), " ") {
			t.Errorf("%s: committed Env %q, docker's %q", s.to, got, want)
		}
		if wd := e.must("inspect", "--format", "{{json .Config.WorkingDir}}", s.to+":1"); strings.TrimSpace(wd) != strings.TrimSpace(wantWd) {
			t.Errorf("%s: committed WorkingDir %s, docker's %s", s.to, wd, wantWd)
		}
	}
}
