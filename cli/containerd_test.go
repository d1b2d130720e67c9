package cli

import (
	"context"
	"io"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestContainerReadsNeedRoot: committing or diffing another runtime's
// container reads its layer (trusted.* xattrs, files of any owner), so
// snap asks for root first, for containerd:// as for docker:// and runc://.
func TestContainerReadsNeedRoot(t *testing.T) {
	for _, args := range [][]string{
		{"commit", "containerd://k8s.io/web", "x:1"},
		{"commit", "containerd://web"},
		{"diff", "containerd://default/web"},
		{"commit", "docker://web", "x:1"},
		{"diff", "runc://web"},
	} {
		app := App(io.Discard, io.Discard)
		asked, root := false, false
		for _, c := range app.Commands {
			c.Before = func(c *cli.Context) error {
				asked = true
				_, root = needsRoot(c)
				return errAsked
			}
		}
		runApp(context.Background(), app, append([]string{"snap"}, args...))
		if !asked || !root {
			t.Errorf("snap %q: asked %v, needs root %v; want root", args, asked, root)
		}
	}
}
