package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"snap/cli"
	"snap/internal/fixtures"
	"snap/internal/testenv"
)

// snapCLI runs snap's command line in-process against root.
func snapCLI(t *testing.T, root string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"snap", "--root", root}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func mustSnap(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, errs, code := snapCLI(t, root, args...)
	if code != 0 {
		t.Fatalf("snap %v: exit %d: %s", args, code, errs)
	}
	return out
}

func cmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

// golden builds, in a fresh store, a base imported from the busybox
// fixture and an image committed on it from a changed copy of its rootfs.
func golden(t *testing.T, env ...string) (root, base string) {
	t.Helper()
	testenv.Root(t, "commit --base (unpacks layers with their owners)")
	w := t.TempDir()
	root, base = filepath.Join(w, "store"), filepath.Join(w, "base")
	if err := fixtures.Base(base); err != nil {
		t.Fatal(err)
	}
	sh(t, fmt.Sprintf("tar -C %s --numeric-owner -czf %s/base.tgz .", base, w))
	mustSnap(t, root, "import", w+"/base.tgz", "snap-e2e/base:1")
	rootfs := filepath.Join(w, "rootfs")
	sh(t, "cp -a "+base+" "+rootfs)
	sh(t, "echo hello from snap > "+rootfs+"/etc/motd")                                                                                  // changed
	sh(t, "rm "+rootfs+"/var/lib/state")                                                                                                 // removed: a whiteout
	sh(t, "rm -rf "+rootfs+"/usr/share/doc/base && mkdir "+rootfs+"/usr/share/doc/base && echo new > "+rootfs+"/usr/share/doc/base/NEW") // replaced dir
	sh(t, "mkdir -p "+rootfs+"/opt/app && echo app > "+rootfs+"/opt/app/run")                                                            // added
	mustSnap(t, root, "commit", "-a", "Ops <ops@example.com>", "-m", "golden v1",
		"-c", `CMD ["/bin/cat","/etc/motd"]`, "-c", "ENV MODE=golden", "-c", "LABEL tier=gold", "-c", "WORKDIR /opt/app",
		"--base", "snap-e2e/base:1", "dir://"+rootfs, "snap-e2e/golden:1")
	// Nothing changed since: an empty layer.
	mustSnap(t, root, "commit", "-a", "QA <qa@example.com>", "-m", "no change", "--base", "snap-e2e/golden:1", "dir://"+rootfs, "snap-e2e/golden:2")
	return root, rootfs
}

func TestImageRunsUnderDocker(t *testing.T) {
	requireDocker(t)
	root, _ := golden(t)
	archive := filepath.Join(t.TempDir(), "golden.tar")
	mustSnap(t, root, "save", "-o", archive, "snap-e2e/golden:2")
	cmd(t, fixtures.DockerBinary(), "load", "-i", archive)
	defer fixtures.Docker("rmi", "-f", "snap-e2e/golden:2")

	run := func(args ...string) string {
		return cmd(t, fixtures.DockerBinary(), append([]string{"run", "--rm", "--network", "none", "snap-e2e/golden:2"}, args...)...)
	}
	if got := run(); got != "hello from snap\n" {
		t.Errorf("docker run (CMD from -c) printed %q", got)
	}
	if got := run("ls", "/usr/share/doc/base"); got != "NEW\n" {
		t.Errorf("replaced dir holds %q, want only NEW", got)
	}
	if got := run("sh", "-c", "test -e /var/lib/state && echo present || echo gone"); got != "gone\n" {
		t.Errorf("removed file: %q", got)
	}
	if got := run("sh", "-c", "pwd; echo $MODE; cat run"); got != "/opt/app\ngolden\napp\n" {
		t.Errorf("WORKDIR/ENV/added file: %q", got)
	}
	inspect := cmd(t, fixtures.DockerBinary(), "image", "inspect", "--format", "{{.Author}}|{{.Config.Labels.tier}}|{{json .Config.Cmd}}", "snap-e2e/golden:2")
	if want := "QA <qa@example.com>|gold|[\"/bin/cat\",\"/etc/motd\"]\n"; inspect != want {
		t.Errorf("docker inspect: %q, want %q", inspect, want)
	}

	// docker history and snap history, line by line, for the same image.
	for _, format := range []string{
		"{{.ID}}|{{.CreatedAt}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}",
		"{{.CreatedSince}}|{{.Size}}",
	} {
		for _, human := range []string{"-H=true", "-H=false"} {
			d := cmd(t, fixtures.DockerBinary(), "history", human, "--no-trunc", "--format", format, "snap-e2e/golden:2")
			s := mustSnap(t, root, "history", human, "--no-trunc", "--format", format, "snap-e2e/golden:2")
			if d != s {
				t.Errorf("history %s --format %q\ndocker:\n%s\nsnap:\n%s", human, format, d, s)
			}
		}
	}
	// The tables as they are, the relative times masked (the two commands
	// run a moment apart).
	since := regexp.MustCompile(`(Less than a second|About a minute|\d+ seconds|\d+ minutes) ago`)
	var d string
	for _, args := range [][]string{{}, {"-H=false"}, {"--no-trunc"}, {"-q"}} {
		d = cmd(t, fixtures.DockerBinary(), append(append([]string{"history"}, args...), "snap-e2e/golden:2")...)
		s := mustSnap(t, root, append(append([]string{"history"}, args...), "snap-e2e/golden:2")...)
		if since.ReplaceAllString(d, "X ago") != since.ReplaceAllString(s, "X ago") {
			t.Errorf("history %v\ndocker:\n%s\nsnap:\n%s", args, d, s)
		}
	}
	d = cmd(t, fixtures.DockerBinary(), "history", "snap-e2e/golden:2")
	if !strings.Contains(d, "0B") {
		t.Errorf("an empty commit shows 0B in docker history:\n%s", d)
	}
}

func TestStoreReadByOCITools(t *testing.T) {
	root, _ := golden(t)
	out := cmd(t, "skopeo", "inspect", "oci:"+root+":snap-e2e/golden:1")
	if !strings.Contains(out, `"tier": "gold"`) || strings.Count(out, "sha256:") < 3 {
		t.Errorf("skopeo inspect:\n%s", out)
	}
	ls := cmd(t, "umoci", "ls", "--layout", root)
	for _, tag := range []string{"snap-e2e/base:1", "snap-e2e/golden:1", "snap-e2e/golden:2"} {
		if !strings.Contains(ls, tag+"\n") {
			t.Errorf("umoci ls misses %s:\n%s", tag, ls)
		}
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	cmd(t, "umoci", "unpack", "--image", root+":snap-e2e/golden:1", bundle)
	if b, err := os.ReadFile(bundle + "/rootfs/etc/motd"); err != nil || string(b) != "hello from snap\n" {
		t.Errorf("umoci unpack: motd %q %v", b, err)
	}
}

func TestSourceDateEpochGivesSameID(t *testing.T) {
	root, rootfs := golden(t)
	var ids []string
	for i := range 2 {
		sh(t, "touch "+rootfs+"/etc/motd") // a newer mtime: clamped away
		out, errs, code := snapCLI(t, root, "commit", "--source-date-epoch", "1700000000", "-m", "repro",
			"--base", "snap-e2e/base:1", "dir://"+rootfs, fmt.Sprintf("snap-e2e/repro:%d", i))
		if code != 0 {
			t.Fatal(errs)
		}
		ids = append(ids, out)
	}
	if ids[0] != ids[1] {
		t.Fatalf("same tree, same SOURCE_DATE_EPOCH, different IDs: %q", ids)
	}
}

// TestChangesLikeDockerCommit applies the same -c lines with docker commit
// and with snap and compares the resulting configs field by field.
func TestChangesLikeDockerCommit(t *testing.T) {
	requireDocker(t)
	changes := []string{
		`ENV A=1 B="two words" C=$A`, `ENV PATH=/usr/bin:/bin`, `CMD echo "hi there"`, `ENTRYPOINT ["/bin/sh","-c"]`,
		`CMD ["echo","json"]`, `EXPOSE 80 53/udp`, `LABEL tier=gold "with space"=yes`, `USER 1000:1000`,
		`WORKDIR /srv`, `WORKDIR app`, `VOLUME ["/data", "/cache"]`, `ONBUILD RUN make`,
		// ranges expand, protocols lowercase, words expand to several ports
		`ENV PORTS="81 82/udp"`, `EXPOSE 1-3 8080/UDP 7-8/Sctp $PORTS 127.0.0.1:9090:90`,
	}
	// docker 20.10 refuses STOPSIGNAL and HEALTHCHECK in commit changes
	// ("not a valid change command"); snap takes them, as newer dockers do,
	// and its unit tests cover them.
	c, err := fixtures.RunContainer("snap-conf-changes", fixtures.BaseImage, "true")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	args := []string{"commit"}
	for _, ch := range changes {
		args = append(args, "-c", ch)
	}
	cmd(t, fixtures.DockerBinary(), append(args, c.Name, "snap-conf/changes:ref")...)
	defer fixtures.Docker("rmi", "-f", "snap-conf/changes:ref")
	const fields = `{{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}} {{json .Config.ExposedPorts}} {{json .Config.Labels}} {{json .Config.User}} {{json .Config.WorkingDir}} {{json .Config.Volumes}} {{json .Config.StopSignal}} {{json .Config.OnBuild}} {{json .Config.Healthcheck}}`
	want := cmd(t, fixtures.DockerBinary(), "image", "inspect", "--format", fields, "snap-conf/changes:ref")

	root, rootfs := golden(t)
	sargs := []string{"commit"}
	for _, ch := range changes {
		sargs = append(sargs, "-c", ch)
	}
	mustSnap(t, root, append(sargs, "--base", "snap-e2e/base:1", "dir://"+rootfs, "snap-e2e/changes:1")...)
	archive := filepath.Join(t.TempDir(), "c.tar")
	mustSnap(t, root, "save", "-o", archive, "snap-e2e/changes:1")
	cmd(t, fixtures.DockerBinary(), "load", "-i", archive)
	defer fixtures.Docker("rmi", "-f", "snap-e2e/changes:1")
	got := cmd(t, fixtures.DockerBinary(), "image", "inspect", "--format", fields, "snap-e2e/changes:1")
	if got != want {
		t.Errorf("config after -c\ndocker commit: %s\nsnap commit:   %s", want, got)
	}
}

// TestChangesRefusedLikeDockerCommit: the -c lines docker commit refuses,
// snap refuses too, naming the line and leaving the store as it was.
// (docker 20.10 refuses every STOPSIGNAL in commit changes, so STOPSIGNAL FOO
// is compared in the commit package's unit test, against moby's parser.)
func TestChangesRefusedLikeDockerCommit(t *testing.T) {
	requireDocker(t)
	c, err := fixtures.RunContainer("snap-conf-changes-refused", fixtures.BaseImage, "true")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	root, rootfs := golden(t)
	index := func() string {
		b, err := os.ReadFile(filepath.Join(root, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, bad := range []string{"EXPOSE abc", "EXPOSE 99999", "EXPOSE 80/xyz", "EXPOSE 3-1", "EXPOSE 80 1-70000"} {
		t.Run(bad, func(t *testing.T) {
			out, err := exec.Command(fixtures.DockerBinary(), "commit", "-c", bad, c.Name, "snap-conf/refused:1").CombinedOutput()
			if err == nil {
				fixtures.Docker("rmi", "-f", "snap-conf/refused:1")
				t.Fatalf("docker commit took %q; the test's premise is wrong", bad)
			}
			before := index()
			_, errs, code := snapCLI(t, root, "commit", "-c", bad, "--base", "snap-e2e/base:1", "dir://"+rootfs, "snap-e2e/refused:1")
			if code != 1 || !strings.Contains(errs, bad) || strings.Count(errs, "\n") != 1 {
				t.Errorf("snap commit -c %q: exit %d, stderr %q; docker: %s", bad, code, errs, out)
			}
			if index() != before {
				t.Error("the store's index changed")
			}
		})
	}
}

// TestArchivesRoundTrip moves images through every archive kind and the
// tools that write them: snap's oci-archive read by skopeo; skopeo's
// oci-archive and docker-archive, and docker save's own, loaded by snap with
// the image ID (the config digest) unchanged.
func TestArchivesRoundTrip(t *testing.T) {
	requireDocker(t)
	root, _ := golden(t)
	w := t.TempDir()
	id := strings.TrimSpace(mustSnap(t, root, "inspect", "-f", "{{.Id}}", "snap-e2e/golden:1"))
	mustSnap(t, root, "save", "--format", "oci-archive", "-o", w+"/snap-oci.tar", "snap-e2e/golden:1")
	if out := cmd(t, "skopeo", "inspect", "--config", "oci-archive:"+w+"/snap-oci.tar:snap-e2e/golden:1"); !strings.Contains(out, "golden v1") {
		t.Errorf("skopeo reads snap's oci-archive:\n%s", out)
	}
	cmd(t, "skopeo", "copy", "-q", "oci:"+root+":snap-e2e/golden:1", "oci-archive:"+w+"/sk-oci.tar:sk/oci:1")
	cmd(t, "skopeo", "copy", "-q", "oci:"+root+":snap-e2e/golden:1", "docker-archive:"+w+"/sk-docker.tar:sk/docker:1")
	mustSnap(t, root, "save", "-o", w+"/snap-docker.tar", "snap-e2e/golden:1")
	cmd(t, fixtures.DockerBinary(), "load", "-i", w+"/snap-docker.tar")
	defer fixtures.Docker("rmi", "-f", "snap-e2e/golden:1")
	cmd(t, fixtures.DockerBinary(), "tag", "snap-e2e/golden:1", "dk/saved:1")
	defer fixtures.Docker("rmi", "-f", "dk/saved:1")
	cmd(t, fixtures.DockerBinary(), "save", "-o", w+"/docker-save.tar", "dk/saved:1")
	for file, tag := range map[string]string{"sk-oci.tar": "sk/oci:1", "sk-docker.tar": "sk/docker:1", "docker-save.tar": "dk/saved:1"} {
		other := filepath.Join(w, "store-"+file)
		mustSnap(t, other, "load", "-i", filepath.Join(w, file))
		if got := strings.TrimSpace(mustSnap(t, other, "inspect", "-f", "{{.Id}}", tag)); got != id {
			t.Errorf("%s: loaded as %s, want %s", file, got, id)
		}
		if h := mustSnap(t, other, "history", "-H=false", tag); !strings.Contains(h, "golden v1") {
			t.Errorf("%s: history\n%s", file, h)
		}
	}
}

// TestKilledCommitLeavesNoImage kills `snap commit` with SIGKILL at several
// points of a large commit: the store must hold no new tag, no new index
// entry, and stay usable.
func TestKilledCommitLeavesNoImage(t *testing.T) {
	w := t.TempDir()
	bin := filepath.Join(w, "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	root, rootfs := golden(t)
	for i := range 40 {
		sh(t, fmt.Sprintf("head -c 4000000 /dev/urandom > %s/opt/big%d", rootfs, i))
	}
	before, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		c := exec.Command(bin, "--root", root, "commit", "--base", "snap-e2e/base:1", "dir://"+rootfs, "snap-e2e/killed:1")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		c.Process.Kill()
		err := c.Wait()
		now, _ := os.ReadFile(filepath.Join(root, "index.json"))
		if err == nil {
			t.Logf("commit finished within %v; nothing to check at this point", after)
			continue
		}
		if string(now) != string(before) {
			t.Fatalf("killed after %v: index changed", after)
		}
		if _, _, code := snapCLI(t, root, "inspect", "snap-e2e/killed:1"); code == 0 {
			t.Fatalf("killed after %v: the tag exists", after)
		}
		mustSnap(t, root, "images")
	}
}
