package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRulesMatch(t *testing.T) {
	tests := []struct {
		pattern string
		path    string
		want    bool
	}{
		{"/var/cache/junk/**", "var/cache/junk/a", true},
		{"/var/cache/junk/**", "var/cache/junk/a/b/c", true},
		{"/var/cache/junk/**", "var/cache/junk", false}, // /a/** keeps /a
		{"/var/cache/junk/**", "var/cache", false},
		{"/var/cache/junk/**", "var/cache/junkyard/a", false},
		{"/etc/ssh/ssh_host_*", "etc/ssh/ssh_host_rsa_key", true},
		{"/etc/ssh/ssh_host_*", "etc/ssh/ssh_host_rsa_key.pub", true},
		{"/etc/ssh/ssh_host_*", "etc/ssh/sshd_config", false},
		{"/etc/ssh/ssh_host_*", "etc/ssh", false},
		{"/home/*/.bash_history", "home/ann/.bash_history", true},
		{"/home/*/.bash_history", "home/.bash_history", false},
		{"/home/*/.bash_history", "home/a/b/.bash_history", false},
		{"/home/*/.bash_history", "/home/ann/.bash_history", true}, // leading slash or not
		{"/tmp", "tmp", true},
		{"/tmp", "tmp/x/y", true}, // a directory covers its subtree
		{"/tmp", "tmpx", false},
		{"/tmp/", "tmp/x", true},
		{"/**/.bash_history", ".bash_history", true},
		{"/**/.bash_history", "root/.bash_history", true},
		{"/**/.bash_history", "home/a/b/.bash_history", true},
		{"/**/.bash_history", "home/a/b/.bash_history.bak", false},
		{"/a/**/b", "a/b", true},
		{"/a/**/b", "a/x/y/b", true},
		{"/a/**/b", "a/x/y/b/z", true},
		{"/a/**/b", "a/x/y/c", false},
		{"/var/log/*.log", "var/log/app.log", true},
		{"/var/log/*.log", "var/log/sub/app.log", false},
		{"/var/log/?.log", "var/log/a.log", true},
		{"/var/log/?.log", "var/log/ab.log", false},
		{"/var/log/[ab].log", "var/log/b.log", true},
		{"/var/log/[!ab].log", "var/log/b.log", false},
		{"/var/log/[!ab].log", "var/log/c.log", true},
		{"/x/\\*", "x/*", true},
		{"/x/\\*", "x/y", false},
		{"/**", "anything/at/all", true},
		{"/*", "etc", true},
	}
	for _, tt := range tests {
		r, err := CompileRules([]Rule{{Pattern: tt.pattern, Action: Omit}})
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		if _, got := r.Match(tt.path); got != tt.want {
			t.Errorf("%s on %s: covered %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestRulesOmitWinsOverTruncate(t *testing.T) {
	r, err := CompileRules([]Rule{{"/var/log/**", Truncate}, {"/var/log/secret", Omit}, {"/var/log/x/**", Truncate}})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]Action{"var/log/a": Truncate, "var/log/secret": Omit, "var/log/secret/in": Omit, "var/log/x/y": Truncate} {
		if got, ok := r.Match(p); !ok || got != want {
			t.Errorf("%s: %v %v, want %v", p, got, ok, want)
		}
	}
	var none *Rules
	if _, ok := none.Match("a"); ok || none.Len() != 0 {
		t.Error("nil rules match")
	}
}

func TestCompileRulesRefuses(t *testing.T) {
	for _, p := range []string{"", "relative/path", "*.log", "!/etc/keep", "/a/../etc", "/a/./b", "/a//b", "/", "/var/log/[ab", "/var/[]", "/x/\\"} {
		_, err := CompileRules([]Rule{{Pattern: "/ok/**"}, {Pattern: p}})
		if !errors.Is(err, ErrPattern) {
			t.Errorf("%q: error %v, want ErrPattern", p, err)
			continue
		}
		if !strings.Contains(err.Error(), strings.TrimSpace(`"`+p+`"`)) && !strings.Contains(err.Error(), p) {
			t.Errorf("%q: error %q does not name it", p, err)
		}
	}
	if _, err := CompileRules([]Rule{{Pattern: "/a", Action: Action(7)}}); !errors.Is(err, ErrPattern) {
		t.Errorf("unknown action: %v", err)
	}
}

func mustRules(t *testing.T, rules ...Rule) *Rules {
	t.Helper()
	r, err := CompileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// filterBase is the image below the filtered container.
func filterBase(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	write(t, filepath.Join(d, "etc/ssh/ssh_host_rsa_key"), "BASE-KEY")
	write(t, filepath.Join(d, "etc/ssh/sshd_config"), "cfg")
	write(t, filepath.Join(d, "srv/data/cfg"), "old")
	write(t, filepath.Join(d, "keep/x"), "x")
	return d
}

// filterEdit changes a filterBase as a provisioning step would.
func filterEdit(t *testing.T, m string) {
	t.Helper()
	write(t, filepath.Join(m, "etc/secret"), "SECRET")
	write(t, filepath.Join(m, "etc/app.conf"), "kept")
	if err := os.Remove(filepath.Join(m, "etc/ssh/ssh_host_rsa_key")); err != nil {
		t.Fatal(err)
	}
	// Rewritten in place: its directories' own metadata do not change.
	if err := os.WriteFile(filepath.Join(m, "srv/data/cfg"), []byte("new-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(m, "opt/big/a/b/c"), "c")
	write(t, filepath.Join(m, "opt/big/d"), "d")
	write(t, filepath.Join(m, "var/cache/junk/sub/x"), "junk")
	write(t, filepath.Join(m, "var/log/app.log"), "log lines")
	write(t, filepath.Join(m, "keep/y"), "y")
}

var filterRules = []Rule{
	{"/etc/secret", Omit},
	{"/etc/ssh/ssh_host_*", Omit},
	{"/srv/data/cfg", Omit},
	{"/opt/big", Omit},
	{"/var/cache/junk/**", Omit},
	{"/var/log/**", Truncate},
}

// TestFilterOverUpperAndRootfs filters the same container's changes read
// through a real overlay mount, once as the overlay upper and once as a
// rootfs compared with its lower: a new secret file is omitted, a deleted
// base file under an omit rule is not whited out, a directory's subtree
// goes, /a/** keeps /a, a truncated log is written empty, and a directory
// yielded only to carry an omitted change does not stay behind.
func TestFilterOverUpperAndRootfs(t *testing.T) {
	lower := filterBase(t)
	rules := mustRules(t, filterRules...)
	var rootfsChanges, rootfsNames []string
	upper := overlay(t, lower, func(m string) {
		filterEdit(t, m)
		src := Filter(Rootfs{Root: m, Lowers: []string{lower}}, rules)
		rootfsChanges = changes(t, src)
		es, _ := layer(t, src, Options{})
		rootfsNames = names(es)
		for _, e := range es {
			if e.hdr.Name == "var/log/app.log" && (e.hdr.Size != 0 || e.body != "") {
				t.Errorf("rootfs: truncated log: size %d body %q", e.hdr.Size, e.body)
			}
		}
	})
	// The rootfs walker yields /srv, /srv/data (and /etc/ssh, whose own
	// metadata it finds unchanged) only to carry a change beneath: with
	// that change omitted they must not remain.
	want := []string{"C /etc", "A /etc/app.conf", "C /keep", "A /keep/y", "A /opt", "A /var", "A /var/cache", "A /var/cache/junk", "A /var/log", "A /var/log/app.log"}
	if !slices.Equal(rootfsChanges, want) {
		t.Errorf("rootfs changes\n got %q\nwant %q", rootfsChanges, want)
	}
	wantNames := []string{"etc/", "etc/app.conf", "keep/", "keep/y", "opt/", "var/", "var/cache/", "var/cache/junk/", "var/log/", "var/log/app.log"}
	if !slices.Equal(rootfsNames, wantNames) {
		t.Errorf("rootfs entries\n got %q\nwant %q", rootfsNames, wantNames)
	}

	src := Filter(Overlay{Upper: upper, Lowers: []string{lower}}, rules)
	// overlayfs copied /etc/ssh, /srv and /srv/data up: they are in the
	// upper and in docker's layer; what is beneath them is not.
	want = []string{"C /etc", "A /etc/app.conf", "C /etc/ssh", "C /keep", "A /keep/y", "A /opt", "C /srv", "C /srv/data", "A /var", "A /var/cache", "A /var/cache/junk", "A /var/log", "A /var/log/app.log"}
	if got := changes(t, src); !slices.Equal(got, want) {
		t.Errorf("overlay changes\n got %q\nwant %q", got, want)
	}
	es, _ := layer(t, src, Options{})
	for _, e := range es {
		if strings.Contains(e.hdr.Name, ".wh.") || strings.Contains(e.hdr.Name, "secret") || strings.Contains(e.hdr.Name, "big") || strings.Contains(e.body, "SECRET") {
			t.Errorf("overlay layer holds %s (%q)", e.hdr.Name, e.body)
		}
		if e.hdr.Name == "var/log/app.log" && (e.hdr.Size != 0 || e.body != "") {
			t.Errorf("overlay: truncated log: size %d body %q", e.hdr.Size, e.body)
		}
	}

	// snap diff lists what the commit writes: the filtered walker is a
	// Merger whose listing is filtered too, and never a Squasher.
	m, ok := src.(interface{ Merged() Walker })
	if !ok {
		t.Fatal("filtered overlay walker is not a Merger")
	}
	if _, ok := src.(interface{ Whole() Walker }); ok {
		t.Error("filtered walker is a Squasher: its whole view would drop the base's files")
	}
	for _, c := range changes(t, m.Merged()) {
		if strings.Contains(c, "secret") || strings.Contains(c, "ssh_host") || strings.Contains(c, "big") || strings.Contains(c, "junk/") || c == "C /srv/data/cfg" {
			t.Errorf("merged listing shows %s", c)
		}
	}
}

// TestFilterWithoutRulesChangesNothing: no rules, or rules that match
// nothing, give the layer the walker gives alone, byte for byte.
func TestFilterWithoutRulesChangesNothing(t *testing.T) {
	lower := baseTree(t)
	upper := overlay(t, lower, func(m string) { edit(t, m) })
	w := Overlay{Upper: upper, Lowers: []string{lower}}
	if got, ok := Filter(w, nil).(Overlay); !ok || got.Upper != upper {
		t.Errorf("Filter(w, nil) = %T, want w itself", Filter(w, nil))
	}
	if _, ok := Filter(w, mustRules(t)).(interface{ Whole() Walker }); !ok {
		t.Error("Filter with no rules hides the Squasher")
	}
	plain := layerBytes(t, w)
	if filtered := layerBytes(t, Filter(w, mustRules(t, Rule{"/nowhere/**", Omit}, Rule{"/no/such/*", Truncate}))); !bytes.Equal(plain, filtered) {
		t.Errorf("rules matching nothing changed the layer: %d bytes, %d without", len(filtered), len(plain))
	}
}

func layerBytes(t *testing.T, src Walker) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteLayer(context.Background(), &buf, src, Options{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestTruncateKeepsMetadataNotContent: a truncated file is an empty entry
// with its mode, owner, time and xattrs; its content is never read, so
// the diffID does not depend on it. A symlink, a fifo and a directory
// under the rule are written as they are.
func TestTruncateKeepsMetadataNotContent(t *testing.T) {
	requireRoot(t)
	mtime := time.Unix(1700000000, 0)
	make := func(body string) string {
		u := t.TempDir()
		log := filepath.Join(u, "var/log/app.log")
		write(t, log, body)
		must(t, os.Chmod(log, 0o640))
		must(t, os.Lchown(log, 1000, 1001))
		must(t, unix.Lsetxattr(log, "user.tag", []byte("v"), 0))
		must(t, os.Symlink("app.log", filepath.Join(u, "var/log/link")))
		must(t, unix.Mkfifo(filepath.Join(u, "var/log/fifo"), 0o600))
		must(t, os.Mkdir(filepath.Join(u, "var/log/sub"), 0o750))
		for _, p := range []string{"var/log/sub", "var/log/app.log", "var/log", "var"} {
			must(t, os.Chtimes(filepath.Join(u, p), mtime, mtime))
		}
		must(t, unix.Lutimes(filepath.Join(u, "var/log/link"), []unix.Timeval{unix.NsecToTimeval(mtime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}))
		must(t, os.Chtimes(filepath.Join(u, "var/log/fifo"), mtime, mtime))
		return u
	}
	rules := mustRules(t, Rule{"/var/log/**", Truncate})
	short, long := make("a few lines"), make(strings.Repeat("a great many lines\n", 20000))
	es, res := layer(t, Filter(Overlay{Upper: short}, rules), Options{})
	_, res2 := layer(t, Filter(Overlay{Upper: long}, rules), Options{})
	if res.DiffID != res2.DiffID {
		t.Errorf("truncated content changed the diffID: %s vs %s", res.DiffID, res2.DiffID)
	}
	got := map[string]*tar.Header{}
	for _, e := range es {
		got[e.hdr.Name] = e.hdr
		if e.body != "" {
			t.Errorf("%s: body %q", e.hdr.Name, e.body)
		}
	}
	h := got["var/log/app.log"]
	if h == nil || h.Typeflag != tar.TypeReg || h.Size != 0 || h.Mode != 0o640 || h.Uid != 1000 || h.Gid != 1001 || !h.ModTime.Equal(mtime) || h.PAXRecords["SCHILY.xattr.user.tag"] != "v" {
		t.Fatalf("truncated file header %+v", h)
	}
	if h := got["var/log/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "app.log" {
		t.Errorf("symlink under truncate: %+v", h)
	}
	if h := got["var/log/fifo"]; h == nil || h.Typeflag != tar.TypeFifo {
		t.Errorf("fifo under truncate: %+v", h)
	}
	if h := got["var/log/sub/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o750 {
		t.Errorf("directory under truncate: %+v", h)
	}
	if res.ContentSize != int64(len("app.log")) {
		t.Errorf("content size %d, want the symlink's target alone", res.ContentSize)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedHardlinksLeakNothing: a truncated path and a kept one that
// share an inode never share an entry, in either order: the kept path
// keeps its content, the truncated one is empty, and links among
// truncated paths stay links.
func TestTruncatedHardlinksLeakNothing(t *testing.T) {
	eachMode(t, func(t *testing.T, root string, src Walker) {
		write(t, filepath.Join(root, "a/kept"), "SECRET-CONTENT")
		must(t, os.MkdirAll(filepath.Join(root, "t"), 0o755))
		must(t, os.Link(filepath.Join(root, "a/kept"), filepath.Join(root, "t/first")))
		must(t, os.Link(filepath.Join(root, "a/kept"), filepath.Join(root, "t/second")))
		must(t, os.MkdirAll(filepath.Join(root, "z"), 0o755))
		must(t, os.Link(filepath.Join(root, "a/kept"), filepath.Join(root, "z/kept")))
		// a/kept (kept) comes first, t/* (truncated) next, z/kept (kept) last.
		es, _ := layer(t, Filter(src, mustRules(t, Rule{"/t/**", Truncate})), Options{})
		got := map[string]entry{}
		for _, e := range es {
			got[e.hdr.Name] = e
		}
		if e := got["a/kept"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeReg || e.body != "SECRET-CONTENT" {
			t.Errorf("a/kept: %+v %q", e.hdr, e.body)
		}
		if e := got["t/first"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeReg || e.hdr.Size != 0 || e.hdr.Linkname != "" {
			t.Errorf("t/first: %+v", e.hdr)
		}
		if e := got["t/second"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "t/first" {
			t.Errorf("t/second: %+v", e.hdr)
		}
		if e := got["z/kept"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "a/kept" {
			t.Errorf("z/kept: %+v", e.hdr)
		}
		// The other order: truncated first, kept after.
		es, _ = layer(t, Filter(src, mustRules(t, Rule{"/a/**", Truncate})), Options{})
		got = map[string]entry{}
		for _, e := range es {
			got[e.hdr.Name] = e
		}
		if e := got["a/kept"]; e.hdr == nil || e.hdr.Size != 0 || e.hdr.Typeflag != tar.TypeReg {
			t.Errorf("truncated a/kept: %+v", e.hdr)
		}
		if e := got["t/first"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeReg || e.body != "SECRET-CONTENT" {
			t.Errorf("kept t/first after a truncated link: %+v %q", e.hdr, e.body)
		}
	})
}

// TestTruncateSwappedAfterTheWalk: a file under a truncate rule replaced,
// after the walk listed it, by a fifo (which would block an open) or a
// symlink to a host file (which an open would follow): the writer opens
// neither; the layer is refused with ErrChanged, as for a kept file.
func TestTruncateSwappedAfterTheWalk(t *testing.T) {
	requireRoot(t)
	host := filepath.Join(t.TempDir(), "host")
	write(t, host, "HOST-CANARY")
	for _, swap := range []struct {
		name string
		mk   func(p string) error
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"symlink to host", func(p string) error { return os.Symlink(host, p) }},
	} {
		for _, mode := range []string{"rootfs", "overlay"} {
			t.Run(swap.name+"/"+mode, func(t *testing.T) {
				root := t.TempDir()
				log := filepath.Join(root, "var/log/app.log")
				write(t, log, "lines")
				var w Walker = Rootfs{Root: root}
				if mode == "overlay" {
					w = Overlay{Upper: root}
				}
				src := Filter(mutateAt{src: w, at: "var/log/app.log", mutate: func() error { return replace(log, swap.mk) }}, mustRules(t, Rule{"/var/log/**", Truncate}))
				var buf bytes.Buffer
				_, err := WriteLayer(context.Background(), &buf, src, Options{})
				if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "var/log/app.log") {
					t.Fatalf("error %v, want ErrChanged naming the file", err)
				}
				if bytes.Contains(buf.Bytes(), []byte("HOST-CANARY")) {
					t.Fatal("host content in the layer")
				}
			})
		}
	}
}

// TestRulesManyDoubleStars: a pattern of many `**` segments matches in
// time proportional to its length times the path's, not exponential.
func TestRulesManyDoubleStars(t *testing.T) {
	pat := "/" + strings.Repeat("**/*/", 30) + "x"
	deep := strings.Repeat("d/", 80) + "y"
	r := mustRules(t, Rule{pat, Omit})
	if _, ok := r.Match(deep); ok {
		t.Errorf("%s covers %s", pat, deep)
	}
	if _, ok := r.Match(strings.Repeat("d/", 80) + "x"); !ok {
		t.Errorf("%s does not cover .../x", pat)
	}
}
