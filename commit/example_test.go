package commit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"snap/commit"
	"snap/sourcing"
	"snap/store"
)

// A directory (dir://PATH) committed into a store in a temp dir: one
// layer holding the directory, a history entry with the message, a tag.
func ExampleCommit() {
	tmp, err := os.MkdirTemp("", "snap-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("hello\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	st, err := store.Open(filepath.Join(tmp, "store"))
	if err != nil {
		log.Fatal(err)
	}

	img, err := commit.Commit(context.Background(), st, sourcing.Dir{Root: rootfs}, commit.Options{
		Author:  "Ops <ops@example.com>",
		Message: "golden v1",
		Changes: []string{`CMD ["cat", "/etc/motd"]`},
		Tag:     "golden:1",
	})
	if err != nil {
		log.Fatal(err)
	}

	tagged, err := st.Lookup("golden:1")
	if err != nil {
		log.Fatal(err)
	}
	h := img.Config.History[len(img.Config.History)-1]
	fmt.Println("layers:", len(img.Manifest.Layers))
	fmt.Println("author:", img.Config.Author)
	fmt.Println("comment:", h.Comment)
	fmt.Println("cmd:", img.Config.Config.Cmd)
	fmt.Println("tagged:", tagged.ID == img.ID)
	// Output:
	// layers: 1
	// author: Ops <ops@example.com>
	// comment: golden v1
	// cmd: [cat /etc/motd]
	// tagged: true
}
