package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// ErrNotAbsolute is returned (wrapped) for a container path that is not
// absolute.
var ErrNotAbsolute = errors.New("not an absolute path")

// writeInit makes the init layer dir: the files and mount points the
// runtime needs, so they never land in the container's upper and never in
// a commit. Every path is made through an os.Root on dir, and the volume
// mount points where the overlay of the init layer over the image's layers
// (top-most first) resolves them, symlinks followed inside the rootfs as
// runc follows them when it mounts: an image's "VOLUME /../../x" or a
// symlink /data -> /tmp/host never reaches the host.
func writeInit(dir string, layers []string, meta *Meta, imageVolumes map[string]struct{}) error {
	// The working directory is checked and cleaned as docker does, with the
	// other paths the container is made with.
	if !path.IsAbs(meta.Cwd) {
		return fmt.Errorf("working directory %q: %w", meta.Cwd, ErrNotAbsolute)
	}
	meta.Cwd = path.Clean(meta.Cwd)
	files, err := networkFiles(meta)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	image, err := openImageFS(layers)
	if err != nil {
		return err
	}
	defer image.close()
	// As docker's init layer: these shadow whatever the image has there.
	for _, p := range []string{"proc", "sys", "dev/pts", "dev/shm", "dev/mqueue", "etc"} {
		if err := mkdirLike(root, p, image); err != nil {
			return fmt.Errorf("init layer: %w", err)
		}
	}
	for name, body := range files {
		if err := root.WriteFile(name, []byte(body), 0o644); err != nil {
			return fmt.Errorf("init layer: %w", err)
		}
	}

	type point struct {
		dest string
		file bool
	}
	var points []point
	for v := range imageVolumes {
		points = append(points, point{dest: cleanDest(v)})
	}
	for _, v := range meta.Volumes {
		vol, err := parseVolume(v)
		if err != nil {
			return err
		}
		fi, err := os.Stat(vol.Source)
		points = append(points, point{dest: vol.Dest, file: err == nil && !fi.IsDir()})
	}
	if len(points) == 0 {
		return nil
	}
	// The init layer over the image, sharing the image's open roots.
	merged := &imageFS{dirs: append([]string{dir}, image.dirs...), roots: append([]*os.Root{root}, image.roots...)}
	for _, p := range points {
		rel, fi, err := merged.resolve(p.dest)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", p.dest, err)
		}
		if fi != nil {
			continue // the image has it: runc mounts there
		}
		if parent := path.Dir(rel); parent != "." {
			if err := mkdirLike(root, parent, image); err != nil {
				return fmt.Errorf("mount point %s: %w", p.dest, err)
			}
		}
		if p.file {
			f, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("mount point %s: %w", p.dest, err)
			}
			f.Close()
		} else if err := root.Mkdir(rel, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mount point %s: %w", p.dest, err)
		}
	}
	return nil
}

// mkdirLike makes rel and its missing parents in root. A directory the
// view already has keeps its mode and owner, since the init layer's copy
// is what the overlay shows; a new one is root's, 0755, as runc makes it.
func mkdirLike(root *os.Root, rel string, view *imageFS) error {
	parts := strings.Split(rel, "/")
	for n := 1; n <= len(parts); n++ {
		p := strings.Join(parts[:n], "/")
		if fi, err := root.Lstat(p); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("/%s: %w", p, syscall.ENOTDIR)
			}
			continue
		}
		if err := root.Mkdir(p, 0o755); err != nil {
			return err
		}
		fi, _, err := view.lstat(p)
		if err != nil || !fi.IsDir() {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := root.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := root.Chmod(p, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
	}
	return nil
}
