package e2e

import (
	"strings"
	"testing"
)

// TestCommitExcludeSnapContainer: snap commit --exclude on snap's own
// container (an overlay upper over the image's layers): the excluded new
// files are not in the layer, the excluded deletion of a base file is not
// whited out (the image still has the file), a directory's content goes
// while the directory stays; squashed, the same. snap diff --exclude does
// not list what the commit leaves out.
func TestCommitExcludeSnapContainer(t *testing.T) {
	e := newEnv(t)
	e.must("run", "--name", "xc", "base:1", "sh", "-c",
		"mkdir -p /root /var/cache/junk/a && echo secret > /root/.ash_history && echo j > /var/cache/junk/a/f && echo kept > /etc/kept && rm /etc/group")
	excl := []string{"--exclude", "/root/.ash_history", "--exclude", "/var/cache/junk/**", "--exclude", "/etc/group"}

	all := e.must("diff", "xc")
	for _, want := range []string{"A /root/.ash_history", "D /etc/group", "A /var/cache/junk/a/f"} {
		if !strings.Contains(all, want+"\n") {
			t.Fatalf("snap diff lacks %q (the test would prove nothing):\n%s", want, all)
		}
	}
	listed := e.must(append([]string{"diff", "xc"}, excl...)...)
	if strings.Contains(listed, "ash_history") || strings.Contains(listed, "/etc/group") || strings.Contains(listed, "junk/a") || !strings.Contains(listed, "A /etc/kept\n") {
		t.Errorf("snap diff --exclude lists:\n%s", listed)
	}

	e.must(append([]string{"commit", "xc", "x:1"}, excl...)...)
	for _, n := range e.snapTopLayer(t, "x:1") {
		if strings.Contains(n, "ash_history") || strings.Contains(n, ".wh.") || strings.Contains(n, "junk/a") {
			t.Errorf("the layer holds %s", n)
		}
	}
	e.must(append([]string{"commit", "--squash", "xc", "x:sq"}, excl...)...)
	for _, img := range []string{"x:1", "x:sq"} {
		out := e.must("run", "--rm", img, "sh", "-c", "cat /etc/kept; test -s /etc/group && echo group; test -e /root/.ash_history || echo no-history; ls /var/cache/junk | wc -l")
		if out != "kept\ngroup\nno-history\n0\n" {
			t.Errorf("%s: %q, want the kept file, the base's /etc/group, no history, an empty junk dir", img, out)
		}
	}
}
