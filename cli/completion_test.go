package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestComplete asks snap __complete what a word can become, as the shell
// scripts do: commands, flags of the command typed (flags anywhere before
// the word), and the store's image and container names.
func TestComplete(t *testing.T) {
	root := t.TempDir()
	t.Setenv("SNAP_ROOT", t.TempDir()) // --root on the line wins
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"golden:1", "golden:2", "base:1"} {
		runOut(t, "--root", root, "import", rootfs, tag)
	}
	// A container as the store records it (making one needs root).
	ctr := filepath.Join(root, "containers", "0123456789ab")
	if err := os.MkdirAll(ctr, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctr, "meta.json"), []byte(`{"ID":"0123456789ab","Name":"build"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none")
	r := []string{"--root", root}
	tests := []struct {
		words []string
		cur   string
		want  []string
	}{
		{nil, "com", []string{"commit"}},
		{nil, "ver", []string{"version"}},
		{nil, "--r", []string{"--root"}},
		{nil, "--", []string{"--root", "--version", "--help"}},
		{[]string{"--root"}, "", nil}, // a directory: the shell's file names
		{r, "his", []string{"history"}},
		{[]string{"--root=" + root}, "rm", []string{"rm", "rmi"}},
		{r, "image", []string{"image", "images"}},
		{append(r, "image"), "", []string{"inspect"}},
		{append(r, "image", "inspect"), "gol", []string{"golden:1", "golden:2"}},
		{append(r, "run", "--rm"), "gol", []string{"golden:1", "golden:2"}},
		{append(r, "run", "-e", "A=1", "--name", "x"), "b", []string{"base:1"}},
		{append(r, "run", "golden:1"), "", nil}, // the container's command
		{append(r, "run", "golden:1", "sh"), "-", nil},
		{append(r, "run"), "--rea", []string{"--read-only"}},
		{append(r, "rm", "-f"), "", []string{"build"}},
		{append(r, "commit"), "b", []string{"build"}},
		{append(r, "commit", "build"), "g", []string{"golden:1", "golden:2"}},
		{append(r, "commit", "--base"), "", []string{"golden:1", "golden:2", "base:1"}},
		{append(r, "commit", "-m", "msg"), "--to", []string{"--to-docker"}},
		{append(r, "commit", "dir:///x", "--iidfile"), "", nil}, // a file
		{append(r, "inspect"), "b", []string{"base:1", "build"}},
		{append(r, "rmi"), "golden:", []string{"golden:1", "golden:2"}},
		{append(r, "save", "-o"), "", nil}, // a file
		{[]string{"--root", missing, "rmi"}, "", nil},
		{[]string{"nosuch"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(strings.Join(append(slices.Clone(tc.words), tc.cur+"|"), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"snap", "__complete"}, tc.words...), tc.cur)
			if code := Run(context.Background(), args, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			got := strings.Fields(stdout.String())
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("completion made a store at %s", missing)
	}
}
