package container

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/store"
)

// ErrImageInUse is returned (wrapped) by RemoveImage when a container was
// created from the image.
var ErrImageInUse = errors.New("image is in use by a container")

// ImageConflictError is docker rmi's refusal to remove an image a container
// uses, in docker's words.
type ImageConflictError struct {
	Ref       string // the name as given, when it was a tag
	Image     string // the image ID
	Container string // the container's ID
	Running   bool
	Forcible  bool // -f would untag it
}

func (e *ImageConflictError) Error() string {
	if e.Ref != "" {
		return fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
			e.Ref, short(e.Container), short(e.Image))
	}
	force, state := "must be forced", "stopped"
	if !e.Forcible {
		force = "cannot be forced"
	}
	if e.Running {
		state = "running"
	}
	return fmt.Sprintf("conflict: unable to delete %s (%s) - image is being used by %s container %s", short(e.Image), force, state, short(e.Container))
}

func (e *ImageConflictError) Unwrap() error { return ErrImageInUse }

// short is docker's stringid.TruncateID.
func short(id string) string {
	if _, hex, ok := strings.Cut(id, ":"); ok {
		id = hex
	}
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// RemoveImage is docker rmi over the store: an image no container uses is
// removed as Store.Remove does. An image a container was created from (in
// any state) stays: by its only tag or by ID the removal is refused, as
// docker refuses it; with force only its tags go, and the image stays
// untagged (<none>), so prune keeps the blobs and layers its containers run
// and commit on. It returns docker's "Untagged:"/"Deleted:" lines.
func (m *Manager) RemoveImage(name string, force bool) ([]string, error) {
	unlock, err := m.lockContainers()
	if err != nil {
		return nil, err
	}
	defer unlock()
	img, err := m.st.Lookup(name)
	if err != nil {
		return m.st.Remove(name) // the store names what is wrong, or removes a broken image
	}
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var user, running *Meta
	for _, c := range all {
		if c.Image != img.ID.String() {
			continue
		}
		if user == nil {
			user = c
		}
		if running == nil && m.alive(c) {
			running = c
		}
	}
	if user == nil {
		return m.st.Remove(name)
	}
	ref, refErr := store.ParseRef(name)
	if refErr == nil && slices.Contains(img.Tags, ref) {
		if len(img.Tags) > 1 {
			return m.st.Remove(name) // its other names keep it
		}
		if !force {
			return nil, &ImageConflictError{Ref: name, Image: img.ID.String(), Container: user.ID, Forcible: true}
		}
		return m.untag(img, []string{ref})
	}
	if running != nil {
		return nil, &ImageConflictError{Image: img.ID.String(), Container: running.ID, Running: true}
	}
	if !force || len(img.Tags) == 0 {
		return nil, &ImageConflictError{Image: img.ID.String(), Container: user.ID, Forcible: len(img.Tags) > 0}
	}
	return m.untag(img, img.Tags)
}

// untag takes tags off img and keeps it in the index untagged.
func (m *Manager) untag(img *store.Image, tags []string) ([]string, error) {
	var done []string
	err := m.st.Update(func(idx *ocispec.Index) error {
		done = nil
		var entry *ocispec.Descriptor
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			t := d.Annotations[ocispec.AnnotationRefName]
			if d.Digest != img.ManifestDesc.Digest || t == "" || !slices.Contains(tags, t) {
				return false
			}
			if entry == nil {
				e := d
				entry = &e
			}
			done = append(done, "Untagged: "+t)
			return true
		})
		if entry != nil && !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == img.ManifestDesc.Digest }) {
			e := *entry
			e.Annotations = nil
			for k, v := range entry.Annotations {
				if k != ocispec.AnnotationRefName {
					if e.Annotations == nil {
						e.Annotations = map[string]string{}
					}
					e.Annotations[k] = v
				}
			}
			idx.Manifests = append(idx.Manifests, e)
		}
		return nil
	})
	return done, err
}
