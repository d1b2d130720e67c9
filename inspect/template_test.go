package inspect

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"snap/container"
)

func testView() *Image {
	return &Image{
		ID:              "sha256:0123456789abcdef",
		RepoTags:        []string{"golden:1"},
		RepoDigests:     []string{},
		Created:         "2024-01-02T03:04:05.000000006Z",
		ContainerConfig: &Config{},
		Author:          "Ops <ops@example.com>",
		Config: &Config{
			User:         "1000",
			ExposedPorts: PortSet{"8080/tcp": {}, "53/udp": {}},
			Env:          []string{"A=1", "B=2"},
			Cmd:          StrSlice{"/bin/cat", "/etc/motd"},
			Volumes:      map[string]struct{}{"/data": {}},
			WorkingDir:   "/opt/app",
			Labels:       map[string]string{"tier": "gold"},
		},
		Os:          "linux",
		GraphDriver: GraphDriver{Name: Driver, Data: map[string]string{}},
		RootFS:      RootFS{Type: "layers", Layers: []string{"sha256:aa", "sha256:bb"}},
	}
}

// TestTemplatesOverTypedViews: templates see docker's types, so they print
// what docker prints (a port set as map[8080/tcp:{}], not the
// map[8080/tcp:map[]] that maps decoded from JSON give), with docker's
// template functions.
func TestTemplatesOverTypedViews(t *testing.T) {
	empty := &Image{Config: &Config{}, ContainerConfig: &Config{}}
	tests := []struct {
		view   any
		format string
		want   string
	}{
		{testView(), "{{.Config.ExposedPorts}}", "map[53/udp:{} 8080/tcp:{}]"},
		{testView(), "{{.Config.Volumes}}", "map[/data:{}]"},
		{testView(), "{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}", "53/udp 8080/tcp "},
		{testView(), "{{.RootFS.Layers}}", "[sha256:aa sha256:bb]"},
		{testView(), "{{.RootFS.Type}} {{len .RootFS.Layers}}", "layers 2"},
		{testView(), "{{.Author}}", "Ops <ops@example.com>"},
		{testView(), "{{json .Author}}", `"Ops <ops@example.com>"`},
		{testView(), "{{json .Config.ExposedPorts}}", `{"53/udp":{},"8080/tcp":{}}`},
		{testView(), "{{json .Config.Cmd}}", `["/bin/cat","/etc/motd"]`},
		{testView(), "{{.Config.Labels.tier}} {{.Config.Labels.nope}}", "gold <no value>"},
		{testView(), "{{.Id}}", "sha256:0123456789abcdef"}, // via the JSON, as docker
		{testView(), "{{.ID}}", "sha256:0123456789abcdef"},
		{empty, "{{.Author}}|{{.Comment}}|{{.Parent}}|{{.Config.Env}}|{{.Config.Cmd}}|{{.Config.ExposedPorts}}", "|||[]|[]|map[]"},
		{empty, "{{json .Config}}", `{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}`},
		{empty, "{{json .RootFS}} {{json .Metadata}}", `{"Type":""} {"LastTagTime":"0001-01-01T00:00:00Z"}`},
		// docker/cli's functions
		{testView(), `{{join .Config.Env ","}}`, "A=1,B=2"},
		{testView(), `{{split .Created "T"}}`, "[2024-01-02 03:04:05.000000006Z]"},
		{testView(), `{{upper .Os}} {{lower "ABC"}}`, "LINUX abc"},
		{testView(), `{{title "ops team_x-y"}} {{title .Config.WorkingDir}}`, "Ops Team_x-Y /Opt/App"},
		{testView(), `[{{pad .Os 1 2}}][{{pad "" 1 2}}]`, "[ linux  ][]"},
		{testView(), `{{truncate .ID 12}} {{truncate "abc" 12}} {{truncate "abc" 3}}`, "sha256:01234 abc abc"},
		{testView(), `{{println .Os}}`, "linux\n"},
		{testView(), `{{range .Config.Env}}{{println .}}{{end}}`, "A=1\nB=2\n"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var b bytes.Buffer
			p, err := NewPrinter(&b, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Add(tc.view); err != nil {
				t.Fatal(err)
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(b.String(), "\n"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	if _, err := NewPrinter(&bytes.Buffer{}, "{{"); !errors.Is(err, ErrTemplate) {
		t.Errorf("unclosed action: %v, want ErrTemplate", err)
	}
	var b bytes.Buffer
	p, _ := NewPrinter(&b, "{{.Nope}}")
	err := p.Add(testView())
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), `map has no entry for key "Nope"`) {
		t.Errorf("missing field: %v", err)
	}
	// a view after a failed one still renders with docker's lenient maps
	p, _ = NewPrinter(&b, "{{.Config.Labels.nope}}")
	p.Add(struct{}{})
	b.Reset()
	if err := p.Add(testView()); err != nil {
		t.Fatal(err)
	}
	p.Flush()
	if b.String() != "<no value>\n" {
		t.Errorf("got %q", b.String())
	}
}

func TestPrinterJSON(t *testing.T) {
	for _, tc := range []struct {
		format string
		views  []any
		want   string
	}{
		{"", nil, "[]\n"},
		{"json", nil, "[]\n"},
		{"json", []any{&RootFS{Type: "layers"}, &RootFS{Type: "x"}}, `[{"Type":"layers"},{"Type":"x"}]` + "\n"},
		{"", []any{&ImageMetadata{}}, "[\n    {\n        \"LastTagTime\": \"0001-01-01T00:00:00Z\"\n    }\n]\n"},
		{"{{.Type}}", nil, "\n"},
		{"", []any{&Image{Author: "<a&b>"}}, "\"Author\": \"<a&b>\""},
	} {
		var b bytes.Buffer
		p, err := NewPrinter(&b, tc.format)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range tc.views {
			p.Add(v)
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%q %v: got %q, want %q", tc.format, tc.views, b.String(), tc.want)
		}
	}
}

func TestContainerConfigAsDocker(t *testing.T) {
	meta := &container.Meta{
		Hostname: "abc", Cwd: "/", ImageRef: "img:1",
		Args: []string{"/bin/sh", "-c", "sleep 1"},
		Env:  []string{"A=1", "B=2", container.DefaultPath, "HOSTNAME=abc", "B=3", "C=4"},
	}
	img := &Config{Env: []string{"A=1", "B=2"}, Entrypoint: StrSlice{"/bin/sh", "-c"}, Cmd: StrSlice{"true"}}
	c := containerConfig(meta, img)
	if got := strings.Join(c.Env, " "); got != "B=3 C=4 A=1" {
		t.Errorf("Env %q: want the run's, then the image's it does not set", got)
	}
	if strings.Join(c.Entrypoint, " ") != "/bin/sh -c" || strings.Join(c.Cmd, " ") != "sleep 1" {
		t.Errorf("Entrypoint %q Cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.WorkingDir != "" || c.Labels == nil || c.Image != "img:1" {
		t.Errorf("WorkingDir %q Labels %v Image %q", c.WorkingDir, c.Labels, c.Image)
	}
	meta.Args = []string{"echo", "hi"} // the entrypoint was replaced
	if c := containerConfig(meta, img); c.Entrypoint != nil || strings.Join(c.Cmd, " ") != "echo hi" {
		t.Errorf("Entrypoint %q Cmd %q", c.Entrypoint, c.Cmd)
	}
	if got := (&State{StartedAt: zeroTime}).StartedAt; got != "0001-01-01T00:00:00Z" {
		t.Errorf("zero time %q", got)
	}
	if got := formatTime(time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))); got != "2024-01-02T02:04:05.000000006Z" {
		t.Errorf("time %q", got)
	}
}
