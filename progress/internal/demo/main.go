// Command demo pulls three make-believe layers through progress.For(stdout)
// over about a second, as `docker pull` shows them: the tmux test runs it
// to see the renderer as a person sees it.
//
// With -hold FILE every layer stops halfway through its download until FILE
// exists, so that the test can look at a known screen without timing.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"snap/progress"
)

// Layers is what demo pulls; the test knows the same names and sizes.
var layers = []struct {
	id    string
	total int64
}{
	{"0a1b2c3d4e5f", 3_000_000},
	{"1b2c3d4e5f60", 5_000_000},
	{"2c3d4e5f6071", 7_000_000},
}

const steps = 20

func main() {
	hold := flag.String("hold", "", "stop each layer halfway until this file exists")
	flag.Parse()

	d := progress.For(os.Stdout)
	d.Line("1: Pulling from demo/app")
	for _, l := range layers {
		d.Update(progress.Event{ID: l.id, Status: "Pulling fs layer"})
	}
	var wg sync.WaitGroup
	for _, l := range layers {
		wg.Go(func() {
			for k := int64(1); k <= steps; k++ {
				d.Update(progress.Event{ID: l.id, Status: "Downloading", Current: l.total * k / steps, Total: l.total})
				if k == steps/2 && *hold != "" {
					for {
						if _, err := os.Stat(*hold); err == nil {
							break
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
				time.Sleep(25 * time.Millisecond)
			}
			d.Update(progress.Event{ID: l.id, Status: "Verifying Checksum"})
			d.Update(progress.Event{ID: l.id, Status: "Download complete"})
			for k := int64(1); k <= steps; k++ {
				d.Update(progress.Event{ID: l.id, Status: "Extracting", Current: l.total * k / steps, Total: l.total})
				time.Sleep(20 * time.Millisecond)
			}
			d.Update(progress.Event{ID: l.id, Status: "Pull complete"})
		})
	}
	wg.Wait()
	d.Line("Digest: sha256:" + fmt.Sprintf("%064x", 11))
	d.Line("Status: Downloaded newer image for demo/app:1")
	if err := d.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
