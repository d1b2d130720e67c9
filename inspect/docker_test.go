package inspect_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"snap/cli"
	"snap/internal/fixtures"
	"snap/internal/testenv"
)

// requireDocker: dockerd is the reference, and snap's side runs containers.
func requireDocker(t *testing.T) {
	t.Helper()
	testenv.Root(t, "containers")
	testenv.NeedNoError(t, fixtures.DockerAvailable(), "a running dockerd")
}

func snapRun(root string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"snap", "--root", root}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func mustSnap(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, errs, code := snapRun(root, args...)
	if code != 0 {
		t.Fatalf("snap %q: exit %d: %s", args, code, errs)
	}
	return out
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := fixtures.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unique names what this test creates in the shared dockerd.
func unique(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "snap-inspect-" + hex.EncodeToString(b)
}

// testImage commits, in a fresh store, an image with everything inspect
// shows: author, message, and each -c instruction docker commit takes that
// lands in Config. It returns the store.
func testImage(t *testing.T, tag string, changes ...string) string {
	t.Helper()
	w := t.TempDir()
	root, rootfs := filepath.Join(w, "store"), filepath.Join(w, "rootfs")
	if err := fixtures.Base(rootfs); err != nil {
		t.Fatal(err)
	}
	mustSnap(t, root, "import", rootfs, "snap-inspect-test/base:1")
	if err := os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("golden\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"commit", "--base", "snap-inspect-test/base:1", "-a", "Ops <ops@example.com>", "-m", "golden v1",
		"-c", "ENV MODE=golden", "-c", "EXPOSE 8080", "-c", "VOLUME /data", "-c", "LABEL tier=gold",
		"-c", `CMD ["/bin/cat","/etc/motd"]`, "-c", "WORKDIR /opt/app", "-c", "USER 1000"}
	for _, c := range changes {
		args = append(args, "-c", c)
	}
	mustSnap(t, root, append(args, "dir://"+rootfs, tag)...)
	return root
}

// toDocker hands the image to dockerd under the same tag, as a user would.
func toDocker(t *testing.T, root, tag string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	mustSnap(t, root, "save", "-o", archive, tag)
	mustDocker(t, "load", "-i", archive)
	t.Cleanup(func() { fixtures.Docker("rmi", "-f", tag) })
}

// inspected decodes one object of an inspect JSON array.
func inspected(t *testing.T, who, out string) map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("%s inspect: %v: %s", who, err, out)
	}
	return list[0]
}

// keyDiffs walks docker's and snap's JSON together and lists every key one
// has and the other lacks. Under a path in subset, snap may have fewer keys
// (never others).
func keyDiffs(path string, d, s any, subset map[string]string) []string {
	dm, dok := d.(map[string]any)
	sm, sok := s.(map[string]any)
	if d == nil || s == nil {
		return nil // a value (null or not), not a shape
	}
	if dok != sok {
		return []string{fmt.Sprintf("%s: docker has %T, snap %T", path, d, s)}
	}
	if !dok {
		da, dok := d.([]any)
		sa, sok := s.([]any)
		if dok && sok && len(da) > 0 && len(sa) > 0 {
			return keyDiffs(path+"[]", da[0], sa[0], subset)
		}
		return nil
	}
	var out []string
	for k, dv := range dm {
		p := strings.TrimPrefix(path+"."+k, ".")
		sv, ok := sm[k]
		if !ok {
			if _, ok := subset[path]; !ok {
				out = append(out, p+": docker has it, snap does not")
			}
			continue
		}
		out = append(out, keyDiffs(p, dv, sv, subset)...)
	}
	for k := range sm {
		if _, ok := dm[k]; !ok {
			out = append(out, strings.TrimPrefix(path+"."+k, ".")+": snap has it, docker does not")
		}
	}
	sort.Strings(out)
	return out
}

// at reads a dotted path from decoded JSON.
func at(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func sameValues(t *testing.T, d, s map[string]any, paths []string) {
	t.Helper()
	for _, p := range paths {
		if dv, sv := at(d, p), at(s, p); !reflect.DeepEqual(dv, sv) {
			t.Errorf("%s: docker %s, snap %s", p, js(dv), js(sv))
		}
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestImageInspectLikeDocker hands a snap image to dockerd and compares
// `docker image inspect` with `snap inspect` of the same image: the same
// keys at every level, the same values where they describe the image, and
// the -f forms users type giving the same text.
func TestImageInspectLikeDocker(t *testing.T) {
	requireDocker(t)
	tag := unique(t) + "/img:1"
	root := testImage(t, tag)
	toDocker(t, root, tag)

	d := inspected(t, "docker", mustDocker(t, "image", "inspect", tag))
	s := inspected(t, "snap", mustSnap(t, root, "inspect", tag))
	if diffs := keyDiffs("", d, s, nil); len(diffs) > 0 {
		// GraphDriver.Data is the driver's own map: docker's overlay2 gives an
		// image layer merged and work dirs, snap's layers are plain dirs.
		diffs = slices.DeleteFunc(diffs, func(d string) bool { return strings.HasPrefix(d, "GraphDriver.Data.") })
		if len(diffs) > 0 {
			t.Errorf("keys differ:\n%s", strings.Join(diffs, "\n"))
		}
	}
	// Everything but the engine's own bookkeeping: GraphDriver (driver name
	// and where its directories are) and Metadata.LastTagTime (when a tag
	// last moved in that engine; snap keeps no such time).
	sameValues(t, d, s, []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
		"ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Variant", "Os", "OsVersion",
		"Size", "VirtualSize", "RootFS"})
	if want := []string{"8080/tcp"}; !reflect.DeepEqual(keys(at(s, "Config.ExposedPorts")), want) {
		t.Errorf("Config.ExposedPorts: %s", js(at(s, "Config.ExposedPorts")))
	}

	for _, f := range []string{
		"{{.RootFS.Layers}}",
		"{{.Config.ExposedPorts}}",
		"{{.Config.Volumes}}",
		"{{.Author}}",
		"{{.Id}} {{.RepoTags}} {{.RepoDigests}} {{.Parent}} {{.Comment}} {{.Created}}",
		"{{.Config.Env}} {{.Config.Cmd}} {{.Config.Entrypoint}} {{.Config.Labels}} {{.Config.WorkingDir}} {{.Config.User}}",
		"{{.Config.Labels.tier}} {{.Config.Labels.nope}}",
		"{{.Os}}/{{.Architecture}} {{.Size}} {{.VirtualSize}}",
		"{{json .RootFS}} {{json .Config.ExposedPorts}} {{json .Config.Cmd}} {{json .Config.Volumes}}",
		"{{json .ContainerConfig}} {{.Container}} {{.DockerVersion}}",
		`{{join .Config.Env ","}} {{upper .Os}} {{title .Config.WorkingDir}} {{split .ID ":"}} {{truncate .ID 12}} [{{pad .Os 1 2}}]`,
		`{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}{{len .RootFS.Layers}} {{index .RootFS.Layers 0}}`,
		"{{println .Author}}",
		// Id is the field ID in docker's types: the template fails on them
		// and docker runs it again over the JSON, where Id is found.
		"{{.Id}} {{.ID}}",
		`{{.Id}} {{join .Config.Env ","}}`,
		"{{json .Nope}}",
	} {
		t.Run(f, func(t *testing.T) {
			cmd := exec.Command(fixtures.DockerBinary(), "image", "inspect", "-f", f, tag)
			var derr bytes.Buffer
			cmd.Stderr = &derr
			want, err := cmd.Output()
			got, errs, code := snapRun(root, "inspect", "-f", f, tag)
			if err != nil {
				// docker's own words after snap's prefix, exit 1, nothing printed
				if code != 1 || errs != "snap: "+derr.String() || got != "\n" {
					t.Errorf("docker: %v %q; snap: exit %d %q %q", err, derr.String(), code, errs, got)
				}
				return
			}
			if code != 0 || got != string(want) {
				t.Errorf("snap: exit %d %q %s\ndocker: %q", code, got, errs, want)
			}
		})
	}

	// docker's client (28 here) renders templates over its own newer types,
	// where Config is the OCI config with empty fields left out; snap's are
	// the daemon's (Engine API 1.41, as `docker inspect` without -f prints).
	// So {{json .Config}} must be the daemon's Config exactly, and hold every
	// key docker's client prints with the same value.
	var dc, sc map[string]any
	json.Unmarshal([]byte(mustDocker(t, "image", "inspect", "-f", "{{json .Config}}", tag)), &dc)
	if err := json.Unmarshal([]byte(mustSnap(t, root, "inspect", "-f", "{{json .Config}}", tag)), &sc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sc, at(d, "Config")) {
		t.Errorf("{{json .Config}}: snap %s, the daemon's Config %s", js(sc), js(at(d, "Config")))
	}
	for k, v := range dc {
		if !reflect.DeepEqual(sc[k], v) {
			t.Errorf("{{json .Config}} .%s: docker %s, snap %s", k, js(v), js(sc[k]))
		}
	}
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestImageInspectShapeLikeDockerCommit compares the keys of an image
// docker commit made (its Container and ContainerConfig filled, a Parent)
// with snap's view of the image snap commit made from the same change.
func TestImageInspectShapeLikeDockerCommit(t *testing.T) {
	requireDocker(t)
	if err := fixtures.EnsureBaseImage(); err != nil {
		t.Fatal(err)
	}
	name := unique(t)
	mustDocker(t, "run", "--name", name, "--network", "none", fixtures.BaseImage, "sh", "-c", "echo golden > /etc/motd")
	defer fixtures.Docker("rm", "-f", name)
	mustDocker(t, "commit", "-a", "Ops <ops@example.com>", "-m", "golden v1", "-c", "ENV MODE=golden", "-c", "EXPOSE 8080",
		"-c", "VOLUME /data", "-c", "LABEL tier=gold", "-c", `CMD ["/bin/cat","/etc/motd"]`, "-c", "WORKDIR /opt/app",
		"-c", "USER 1000", name, name+"/img:1")
	defer fixtures.Docker("rmi", "-f", name+"/img:1")
	root := testImage(t, "golden:1")
	d := inspected(t, "docker", mustDocker(t, "image", "inspect", name+"/img:1"))
	s := inspected(t, "snap", mustSnap(t, root, "inspect", "golden:1"))
	diffs := slices.DeleteFunc(keyDiffs("", d, s, nil), func(d string) bool { return strings.HasPrefix(d, "GraphDriver.Data.") })
	if len(diffs) > 0 {
		t.Errorf("keys differ:\n%s", strings.Join(diffs, "\n"))
	}
	sameValues(t, d, s, []string{"Author", "Comment", "Config.Env", "Config.Cmd", "Config.ExposedPorts", "Config.Volumes",
		"Config.Labels", "Config.WorkingDir", "Config.User", "Config.Entrypoint", "RootFS.Type", "Os", "Architecture"})
}

// containerPair is the same container in docker and in snap: the same
// image (handed over by save and load) and the same flags.
type containerPair struct {
	t      *testing.T
	root   string
	docker string // docker's name
	snap   string // snap's name
}

func (p containerPair) inspect() (d, s map[string]any) {
	p.t.Helper()
	return inspected(p.t, "docker", mustDocker(p.t, "container", "inspect", p.docker)),
		inspected(p.t, "snap", mustSnap(p.t, p.root, "container", "inspect", p.snap))
}

// stateNow waits for both containers to reach want, the way a user would
// run inspect after the process got there.
func (p containerPair) stateNow(want string) (d, s map[string]any) {
	p.t.Helper()
	for i := 0; ; i++ {
		d, s = p.inspect()
		if at(d, "State.Status") == want && at(s, "State.Status") == want || i == 100 {
			return d, s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p containerPair) remove() {
	fixtures.Docker("rm", "-f", p.docker)
	snapRun(p.root, "rm", "-f", p.snap)
}

// TestContainerInspectLikeDocker runs the same image with the same flags in
// docker and in snap and compares `docker container inspect` with `snap
// inspect`: keys at every level, and the values both must agree on, running,
// paused, exited with a code, and created.
func TestContainerInspectLikeDocker(t *testing.T) {
	requireDocker(t)
	tag := unique(t) + "/ctr:1"
	root := testImage(t, tag, `ENTRYPOINT ["/bin/sh","-c"]`, `CMD ["sleep 60"]`)
	toDocker(t, root, tag)
	vol := t.TempDir()
	name := unique(t)
	flags := []string{"-e", "X=y", "-v", vol + ":/data:ro"}

	running := containerPair{t, root, name + "-d", name + "-s"}
	defer running.remove()
	mustDocker(t, append(append([]string{"run", "-d", "--name", running.docker, "--network", "none"}, flags...), tag)...)
	mustSnap(t, root, append(append([]string{"run", "-d", "--name", running.snap}, flags...), tag)...)
	d, s := running.stateNow("running")

	// snap's HostConfig carries what applies to its containers (binds,
	// network mode, restart policy, --rm); docker's also holds its cgroup
	// limits, devices, DNS, log driver and the rest snap has no flags for.
	diffs := keyDiffs("", d, s, map[string]string{"HostConfig": "only what applies"})
	if len(diffs) > 0 {
		t.Errorf("keys differ:\n%s", strings.Join(diffs, "\n"))
	}
	if len(keys(at(s, "HostConfig"))) < 5 {
		t.Errorf("HostConfig: %s", js(at(s, "HostConfig")))
	}
	// Not compared: Id, Created, Name, Config.Hostname (each container's
	// own); Driver and GraphDriver (docker's overlay2 dirs, snap's overlay
	// dirs, checked below); the runtime file paths; NetworkSettings (docker's
	// "none" network has IDs and a sandbox, snap's has only its namespace);
	// AppArmorProfile (docker's profile where AppArmor is on, snap sets none).
	sameValues(t, d, s, []string{"Path", "Args", "Image", "RestartCount", "Platform", "MountLabel", "ProcessLabel",
		"ExecIDs", "Mounts", "HostConfig.Binds", "HostConfig.NetworkMode", "HostConfig.PortBindings",
		"HostConfig.RestartPolicy", "HostConfig.AutoRemove", "NetworkSettings.IPAddress", "NetworkSettings.Ports"})
	for k := range at(d, "Config").(map[string]any) {
		if k != "Hostname" {
			sameValues(t, d, s, []string{"Config." + k})
		}
	}
	checkState(t, d, s)
	if id, _ := at(s, "Id").(string); at(s, "Config.Hostname") != id[:12] || at(s, "Name") != "/"+running.snap {
		t.Errorf("Hostname %v, Name %v for %s", at(s, "Config.Hostname"), at(s, "Name"), id)
	}
	checkGraphDriver(t, root, running.snap, s)
	for _, f := range []string{
		"{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}} {{.RestartCount}} {{.Platform}}",
		"{{.Path}} {{.Args}} {{.Config.Cmd}} {{.Config.Entrypoint}} {{.Config.Env}} {{.Config.User}} {{.Config.WorkingDir}}",
		"{{.Config.ExposedPorts}} {{.Config.Volumes}} {{.Config.Labels}} {{.Config.Image}} {{.Image}}",
		"{{.HostConfig.Binds}} {{.HostConfig.NetworkMode}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.AutoRemove}}",
		"{{json .Mounts}} {{range .Mounts}}{{.Source}}:{{.Destination}} {{.RW}}{{end}}",
		"{{.NetworkSettings.IPAddress}}|{{.NetworkSettings.Ports}}|{{range $n, $_ := .NetworkSettings.Networks}}{{$n}}{{end}}",
		"{{len .Config.Hostname}} {{len .Id}} {{len .GraphDriver.Data}}",
	} {
		want := mustDocker(t, "inspect", "-f", f, running.docker)
		if got := mustSnap(t, root, "inspect", "-f", f, running.snap); got != want {
			t.Errorf("-f %s:\nsnap   %q\ndocker %q", f, got, want)
		}
	}

	mustDocker(t, "pause", running.docker)
	mustSnap(t, root, "pause", running.snap)
	d, s = running.stateNow("paused")
	checkState(t, d, s)
	mustDocker(t, "unpause", running.docker)
	mustSnap(t, root, "unpause", running.snap)

	exited := containerPair{t, root, name + "-exit-d", name + "-exit-s"}
	defer exited.remove()
	fixtures.Docker("run", "--name", exited.docker, "--network", "none", tag, "exit 3")
	snapRun(root, "run", "--name", exited.snap, tag, "exit 3")
	d, s = exited.stateNow("exited")
	checkState(t, d, s)
	sameValues(t, d, s, []string{"Path", "Args", "Config.Cmd", "Config.Entrypoint", "State.ExitCode"})

	created := containerPair{t, root, name + "-new-d", name + "-new-s"}
	defer created.remove()
	mustDocker(t, "create", "--name", created.docker, "--network", "none", tag)
	mustSnap(t, root, "create", "--name", created.snap, tag)
	d, s = created.stateNow("created")
	checkState(t, d, s)
}

// checkState compares State: the same fields, values and time formats;
// Pid and times are each container's own.
func checkState(t *testing.T, d, s map[string]any) {
	t.Helper()
	sameValues(t, d, s, []string{"State.Status", "State.Running", "State.Paused", "State.Restarting", "State.OOMKilled",
		"State.Dead", "State.ExitCode", "State.Error"})
	for _, f := range []string{"StartedAt", "FinishedAt"} {
		dv, sv := at(d, "State."+f).(string), at(s, "State."+f).(string)
		if (dv == "0001-01-01T00:00:00Z") != (sv == "0001-01-01T00:00:00Z") {
			t.Errorf("State.%s: docker %q, snap %q", f, dv, sv)
		}
		if _, err := time.Parse(time.RFC3339Nano, sv); err != nil {
			t.Errorf("State.%s: %v", f, err)
		}
	}
	if dp, sp := at(d, "State.Pid").(float64), at(s, "State.Pid").(float64); (dp > 0) != (sp > 0) {
		t.Errorf("State.Pid: docker %v, snap %v", dp, sp)
	}
}

// checkGraphDriver: the dirs snap names are the ones its overlay is
// mounted with.
func checkGraphDriver(t *testing.T, root, name string, s map[string]any) {
	t.Helper()
	merged, _ := at(s, "GraphDriver.Data.MergedDir").(string)
	// thread-self, not self: libcontainer can leave the main thread wedged
	// in a container's mount namespace (a goroutine that joined it and ended
	// locked there), and /proc/self is the main thread's view.
	mi, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == merged {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("GraphDriver.Data.MergedDir %q: not a mount point", merged)
	}
	// snap gives overlayfs its lowers one by one (lowerdir+=), named
	// relative to the store's layers dir as docker names them relative to
	// its l/ dir: resolved there, they are inspect's dirs.
	got := map[string][]string{}
	for _, o := range strings.Split(line[strings.Index(line, " - ")+3:], ",") {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			continue
		}
		k = strings.TrimSuffix(strings.TrimPrefix(k, "overlay "), "+")
		for _, p := range strings.Split(v, ":") {
			if !filepath.IsAbs(p) {
				p = filepath.Join(root, "layers", p)
			}
			got[k] = append(got[k], p)
		}
	}
	for _, k := range []string{"LowerDir", "UpperDir", "WorkDir"} {
		opt := strings.ToLower(strings.TrimSuffix(k, "Dir")) + "dir"
		if want := at(s, "GraphDriver.Data."+k).(string); strings.Join(got[opt], ":") != want {
			t.Errorf("GraphDriver.Data.%s: %s, the mount has %s=%v", k, want, opt, got[opt])
		}
	}
}

// TestContainerSecurityInspectLikeDocker creates the same container with
// each run setting beyond the defaults in docker and in snap, and compares
// what inspect shows of them: HostConfig's confinement, resources and
// network mode, Config's terminal and attach settings.
func TestContainerSecurityInspectLikeDocker(t *testing.T) {
	requireDocker(t)
	tag := unique(t) + "/sec:1"
	root := testImage(t, tag)
	toDocker(t, root, tag)
	name := unique(t)
	paths := []string{"HostConfig.Privileged", "HostConfig.CapAdd", "HostConfig.CapDrop", "HostConfig.SecurityOpt",
		"HostConfig.ReadonlyRootfs", "HostConfig.PidsLimit", "HostConfig.Memory", "HostConfig.NanoCpus",
		"HostConfig.NetworkMode", "Config.Tty", "Config.OpenStdin", "Config.StdinOnce",
		"Config.AttachStdin", "Config.AttachStdout", "Config.AttachStderr"}
	for i, flags := range [][]string{
		{"--network", "host"},
		{"--network", "host", "-i", "-d"},
		{"--network", "host", "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--security-opt", "no-new-privileges",
			"--security-opt", "seccomp=unconfined", "--read-only", "--pids-limit", "50", "--memory", "64m", "--cpus", "1.5", "-t", "-i"},
		{"--network", "host", "--privileged", "--cap-drop", "ALL"},
	} {
		p := containerPair{t, root, fmt.Sprintf("%s-%d-d", name, i), fmt.Sprintf("%s-%d-s", name, i)}
		defer p.remove()
		verb := "create"
		if slices.Contains(flags, "-d") {
			verb = "run" // a detached run attaches nothing
		}
		mustDocker(t, append(append([]string{verb, "--name", p.docker}, flags...), tag)...)
		mustSnap(t, root, append(append([]string{verb, "--name", p.snap}, flags...), tag)...)
		d, s := p.inspect()
		t.Run(strings.Join(flags, " "), func(t *testing.T) { sameValues(t, d, s, paths) })
	}
}
