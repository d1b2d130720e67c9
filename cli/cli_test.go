package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodesAndOutput(t *testing.T) {
	t.Setenv("SNAP_ROOT", t.TempDir())
	u := t.TempDir()
	if err := os.WriteFile(filepath.Join(u, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layer.tar.zst")
	tests := []struct {
		args     []string
		code     int
		stdout   string // prefix or content check
		stderrHs string
	}{
		{[]string{"layer", "--upper", u, "-o", out}, 0, "sha256:", ""},
		{[]string{"layer", "--upper", u, "-o", out, "--compression", "zstd"}, 0, "sha256:", ""},
		{[]string{"layer", "--upper", u}, 0, "f\x00", ""},
		{[]string{"diff", "--upper", u}, 0, "A /f\n", ""},
		{[]string{"layer"}, 2, "", "needs --upper DIR or --rootfs DIR"},
		{[]string{"layer", "--upper", u, "--rootfs", u}, 2, "", "exclude each other"},
		{[]string{"layer", "--upper", u, "--compression", "lz4"}, 2, "", `unknown compression "lz4"`},
		{[]string{"layer", "--upper", u, "--source-date-epoch", "yesterday"}, 2, "", `source date epoch "yesterday"`},
		{[]string{"layer", "--upper", "/no/such/dir"}, 1, "", "/no/such/dir"},
		{[]string{"layer", "--nope"}, 2, "", "nope"},
		{[]string{"diff", "mycontainer"}, 1, "", "no such container: mycontainer"},
		{[]string{"diff", "dir:///no/such/rootfs"}, 1, "", "/no/such/rootfs"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			requireRootFor(t, tc.args...)
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), append([]string{"snap"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			if tc.stdout != "" && !strings.HasPrefix(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q, want prefix %q", stdout.String(), tc.stdout)
			}
			if tc.stderrHs != "" {
				lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
				last := lines[len(lines)-1]
				if !strings.HasPrefix(last, "snap: ") || !strings.Contains(last, tc.stderrHs) {
					t.Errorf("stderr %q, want a line 'snap: ...%s...'", stderr.String(), tc.stderrHs)
				}
			}
		})
	}
	requireRootFor(t, "layer", "--upper", u)
	if lines := strings.Count(runOut(t, "layer", "--upper", u, "-o", out, "--compression", "gzip"), "\n"); lines != 2 {
		t.Errorf("-o with compression prints %d lines, want diffID and digest", lines)
	}
}

func runOut(t *testing.T, args ...string) string {
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), append([]string{"snap"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
	}
	return stdout.String()
}
