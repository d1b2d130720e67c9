package diff

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSameSizeSameSecondIsDecidedByContent is issue 8 item 1: where the
// metadata cannot tell (same size, same second, a side with whole seconds,
// as every file unpacked from a tar), the content decides; where it can
// (equal non-zero nanoseconds, or different times), it still does alone.
// Both walkers that compare (Rootfs for layers, Merged for snap diff) must
// agree.
func TestSameSizeSameSecondIsDecidedByContent(t *testing.T) {
	const sec = 1_700_000_000
	big := strings.Repeat("x", 3*compareChunk+17)
	bigOther := big[:len(big)-1] + "y" // differs in the very last byte
	tests := []struct {
		name              string
		lower, upper      string
		lowerNs, upperNs  int64
		upperSec          int64 // 0: sec
		hardlink, changed bool
	}{
		{name: "both whole seconds, other bytes", lower: "a\n", upper: "b\n", changed: true},
		{name: "both whole seconds, same bytes", lower: "a\n", upper: "a\n"},
		{name: "upper with ns, lower whole, other bytes", lower: "a\n", upper: "b\n", upperNs: 123456789, changed: true},
		{name: "upper with ns, lower whole, same bytes", lower: "a\n", upper: "a\n", upperNs: 123456789},
		{name: "lower with ns, upper whole, other bytes", lower: "a\n", upper: "b\n", lowerNs: 5, changed: true},
		{name: "equal ns: metadata decides", lower: "a\n", upper: "b\n", lowerNs: 42, upperNs: 42},
		{name: "other ns in the second", lower: "a\n", upper: "a\n", lowerNs: 1, upperNs: 2, changed: true},
		{name: "other second", lower: "a\n", upper: "a\n", upperSec: sec + 1, changed: true},
		{name: "large, last byte differs", lower: big, upper: bigOther, changed: true},
		{name: "large, same bytes", lower: big, upper: big},
		{name: "empty files", lower: "", upper: ""},
		{name: "hardlink of the lower", lower: "a\n", upper: "a\n", hardlink: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One directory holds both trees so that a hardlink can join them.
			w := t.TempDir()
			lower, upper := filepath.Join(w, "lower"), filepath.Join(w, "upper")
			write(t, filepath.Join(lower, "f"), tc.lower)
			if tc.hardlink {
				if err := os.Mkdir(upper, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(filepath.Join(lower, "f"), filepath.Join(upper, "f")); err != nil {
					t.Fatal(err)
				}
			} else {
				write(t, filepath.Join(upper, "f"), tc.upper)
			}
			usec := tc.upperSec
			if usec == 0 {
				usec = sec
			}
			setMtime(t, filepath.Join(lower, "f"), sec, tc.lowerNs)
			if !tc.hardlink {
				setMtime(t, filepath.Join(upper, "f"), usec, tc.upperNs)
			}
			var want []string
			if tc.changed {
				want = []string{"C /f"}
			}
			for _, src := range []Walker{Rootfs{Root: upper, Lowers: []string{lower}}, Merged{Upper: upper, Lowers: []string{lower}}} {
				if got := changes(t, src); !slices.Equal(got, want) {
					t.Errorf("%T: changes %q, want %q", src, got, want)
				}
			}
		})
	}
}

func setMtime(t *testing.T, p string, sec, nsec int64) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(sec*1e9 + nsec), unix.NsecToTimespec(sec*1e9 + nsec)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}
