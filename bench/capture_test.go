package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"snap/internal/fixtures"
)

// captureSteps are the same four steps as a capture file and as the
// Dockerfile a docker user would write instead: a small run, a copy, an
// env, and a run that writes 64 MiB.
const captureFile = `base: %s
steps:
  - run: mkdir -p /opt/app && echo hi > /opt/app/x
  - copy: {src: motd, dst: /etc/motd}
  - env: MODE=golden
  - run: dd if=/dev/urandom of=/opt/app/blob bs=1M count=64 2>/dev/null
tags: [bench/golden:1]
`

const dockerfile = `FROM %s
RUN mkdir -p /opt/app && echo hi > /opt/app/x
COPY motd /etc/motd
ENV MODE=golden
RUN dd if=/dev/urandom of=/opt/app/blob bs=1M count=64 2>/dev/null
`

// BenchmarkCapture races `snap capture` against `docker build` of the same
// steps: from nothing (no cache on either side; each side's images freed
// untimed), then with nothing changed (snap makes nothing; docker build
// takes every step from its cache).
func BenchmarkCapture(b *testing.B) {
	setup(b)
	dir := b.TempDir()
	root := filepath.Join(dir, "store")
	base := filepath.Join(dir, "base.tar")
	sh(b, fmt.Sprintf("%s save -o %s %s", docker(), base, fixtures.BaseImage))
	os.WriteFile(filepath.Join(dir, "motd"), []byte("golden\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "capture.yaml"), []byte(fmt.Sprintf(captureFile, fixtures.BaseImage)), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf(dockerfile, fixtures.BaseImage)), 0o644)
	fresh := fmt.Sprintf("rm -rf %s && %s --root %s load -i %s >/dev/null", root, snapBin, root, base)
	sh(b, fresh)
	snapCapture := fmt.Sprintf("%s --root %s capture -q -f %s/capture.yaml", snapBin, root, dir)
	dockerBuild := fmt.Sprintf("DOCKER_BUILDKIT=0 %s build -q -t bench/golden:1 %s >/dev/null", docker(), dir)
	med := race(b, []tool{
		{name: "snap capture", cmd: snapCapture + " --no-cache", after: fresh},
		{name: "docker build --no-cache", cmd: fmt.Sprintf("DOCKER_BUILDKIT=0 %s build --no-cache -q -t bench/golden:1 %s >/dev/null", docker(), dir),
			after: docker() + " rmi -f bench/golden:1 >/dev/null"},
	})
	report(b, med, "snap capture", "docker build --no-cache", 0.8)

	// Nothing changed since the last capture / build.
	sh(b, snapCapture)
	sh(b, dockerBuild)
	b.Cleanup(func() { sh(b, docker()+" rmi -f bench/golden:1 >/dev/null") })
	med = race(b, []tool{
		{name: "snap capture unchanged", cmd: snapCapture},
		{name: "docker build cached", cmd: dockerBuild},
	})
	report(b, med, "snap capture unchanged", "docker build cached", 0.5)
	reportTime(b, "snap capture unchanged", med["snap capture unchanged"], 1.0)
}
