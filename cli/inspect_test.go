package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func snapIn(t *testing.T, root string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(t.Context(), append([]string{"snap", "--root", root}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// inspectStore holds base:1 (imported, no author, no config) and golden:1
// (committed on it with -a, -m and -c instructions).
func inspectStore(t *testing.T) string {
	t.Helper()
	w := t.TempDir()
	root, rootfs := filepath.Join(w, "store"), filepath.Join(w, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("hi\n"), 0o644)
	if _, errs, code := snapIn(t, root, "import", rootfs, "base:1"); code != 0 {
		t.Fatal(errs)
	}
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("golden\n"), 0o644)
	for _, args := range [][]string{
		{"commit", "--base", "base:1", "-a", "Ops <ops@example.com>", "-m", "golden v1", "-c", "EXPOSE 8080", "-c", "VOLUME /data",
			"-c", "ENV MODE=golden", "-c", "LABEL tier=gold", "-c", `CMD ["/bin/cat","/etc/motd"]`, "dir://" + rootfs, "golden:1"},
	} {
		requireRootFor(t, args...)
		if _, errs, code := snapIn(t, root, args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	return root
}

// TestInspectTemplatesLikeDocker: -f runs over docker's typed views, so the
// forms users copy from docker print what docker prints.
func TestInspectTemplatesLikeDocker(t *testing.T) {
	root := inspectStore(t)
	tests := []struct {
		image, format, want string
	}{
		{"golden:1", "{{.Config.ExposedPorts}}", "map[8080/tcp:{}]"},
		{"golden:1", "{{.Config.Volumes}}", "map[/data:{}]"},
		{"golden:1", "{{.RootFS.Type}} {{len .RootFS.Layers}}", "layers 2"},
		{"golden:1", "{{.Author}}|{{.Comment}}", "Ops <ops@example.com>|golden v1"},
		{"golden:1", "{{json .Config.ExposedPorts}} {{json .Config.Cmd}}", `{"8080/tcp":{}} ["/bin/cat","/etc/motd"]`},
		{"golden:1", `{{join .Config.Env ","}} {{.Config.Labels.tier}} {{upper .Os}}`, "MODE=golden gold LINUX"},
		{"base:1", "{{.Author}}|{{.Parent}}|{{.Config.Env}}|{{.Config.Cmd}}|{{.Config.Hostname}}", "||[]|[]|"},
		{"base:1", "{{json .Config}}", `{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}`},
		{"base:1", "{{json .Author}} {{.VirtualSize}}", `"" 3`},
	}
	for _, tc := range tests {
		t.Run(tc.image+" "+tc.format, func(t *testing.T) {
			out, errs, code := snapIn(t, root, "inspect", "-f", tc.format, tc.image)
			if code != 0 || out != tc.want+"\n" {
				t.Errorf("exit %d %q %s, want %q", code, out, errs, tc.want)
			}
		})
	}
	out, _, _ := snapIn(t, root, "inspect", "-f", "{{json .RootFS.Layers}}", "golden:1")
	var layers []string
	if json.Unmarshal([]byte(out), &layers); len(layers) != 2 || !strings.HasPrefix(layers[1], "sha256:") {
		t.Errorf("RootFS.Layers %q", out)
	}
}

// TestInspectNames: docker's lookup (containers, then images; --type; image
// and container subcommands), every found object printed, each missing one
// named on stderr, exit 1.
func TestInspectNames(t *testing.T) {
	root := inspectStore(t)
	if _, errs, code := snapIn(t, root, "create", "--name", "web", "golden:1"); code != 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		args     []string
		code     int
		stdout   string // what each line names: image or container
		stderr   []string
		template string
	}{
		{args: []string{"inspect", "golden:1", "web"}, stdout: "image\ncontainer\n"},
		{args: []string{"inspect", "nope", "golden:1", "nope2"}, code: 1, stdout: "image\n",
			stderr: []string{"snap: Error: No such object: nope", "snap: Error: No such object: nope2"}},
		{args: []string{"inspect", "--type", "image", "web"}, code: 1, stdout: "\n", stderr: []string{"snap: No such image: web"}},
		{args: []string{"inspect", "--type", "container", "golden:1"}, code: 1, stdout: "\n", stderr: []string{"snap: No such container: golden:1"}},
		{args: []string{"inspect", "--type", "container", "web"}, stdout: "container\n"},
		{args: []string{"image", "inspect", "base:1", "web"}, code: 1, stdout: "image\n", stderr: []string{"snap: No such image: web"}},
		{args: []string{"container", "inspect", "web", "base:1"}, code: 1, stdout: "container\n", stderr: []string{"snap: No such container: base:1"}},
		{args: []string{"inspect", "--type", "volume", "web"}, code: 2, stderr: []string{`snap: unknown type: "volume"`}},
		{args: []string{"inspect"}, code: 2, stderr: []string{"snap: inspect needs"}},
		{args: []string{"image", "inspect", "--bogus", "web"}, code: 2, stderr: []string{"snap: inspect: unknown flag: --bogus"}},
		{args: []string{"container", "inspect"}, code: 2, stderr: []string{"snap: container inspect needs"}},
		{args: []string{"inspect", "-f", "{{", "web"}, code: 2, stderr: []string{"snap: template parsing error: template: :1: unclosed action"}},
		{args: []string{"inspect", "-f", "{{.Nope}}", "web"}, code: 1, template: "-", stdout: "\n",
			stderr: []string{`snap: template parsing error: template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"`}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := tc.args
			if tc.template == "" && tc.code != 2 {
				args = append([]string{args[0], "-f", "{{.ID}}"}, args[1:]...)
				if args[0] == "image" || args[0] == "container" {
					args = append([]string{args[0], "inspect", "-f", args[2]}, tc.args[2:]...)
				}
			}
			out, errs, code := snapIn(t, root, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			if tc.template == "" {
				ids := strings.Split(out, "\n")
				for i, id := range ids {
					if strings.HasPrefix(id, "sha256:") {
						ids[i] = "image"
					} else if len(id) == 64 {
						ids[i] = "container"
					}
				}
				out = strings.Join(ids, "\n")
			}
			if tc.code != 2 && out != tc.stdout {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			if errs == "" {
				lines = nil
			}
			if len(lines) != len(tc.stderr) {
				t.Fatalf("stderr %q, want %d lines %q", errs, len(tc.stderr), tc.stderr)
			}
			for i, want := range tc.stderr {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("stderr line %q, want %q", lines[i], want)
				}
			}
		})
	}
	// A created container, as docker shows one.
	out, errs, _ := snapIn(t, root, "inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.StartedAt}} {{.Path}} {{.Args}} {{.Config.Cmd}} {{.Config.Image}} {{.Config.ExposedPorts}} {{.Config.Env}}", "web")
	if want := "/web created false 0001-01-01T00:00:00Z /bin/cat [/etc/motd] [/bin/cat /etc/motd] golden:1 map[8080/tcp:{}] [MODE=golden]\n"; out != want {
		t.Errorf("container: %q %s, want %q", out, errs, want)
	}
	// Nothing found: docker's empty array.
	if out, _, code := snapIn(t, root, "inspect", "nope"); code != 1 || out != "[]\n" {
		t.Errorf("exit %d %q, want [] and exit 1", code, out)
	}
	// The JSON of several objects is one array, in the order asked.
	out, _, _ = snapIn(t, root, "inspect", "web", "golden:1")
	var views []map[string]any
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 2 || views[0]["Name"] != "/web" || views[1]["Author"] != "Ops <ops@example.com>" {
		t.Errorf("%v: %s", err, out)
	}
}
