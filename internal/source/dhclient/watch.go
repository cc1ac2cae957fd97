package dhclient

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/fsnotify/fsnotify"
)

// watcher tells the source when lease files may have changed. The source
// re-reads them and acts on the difference, so a signal too many costs one
// read and a signal too few is what must not happen.
type watcher interface {
	// Changes receives a value after something relevant changed. Signals
	// coalesce: one pending value stands for any number of changes.
	Changes() <-chan struct{}
	Close() error
}

// fsWatcher watches directories with inotify (fsnotify). A directory that
// does not exist is replaced by its nearest existing parent until it
// appears; when a watched directory is removed or renamed away, the parent
// takes over again.
type fsWatcher struct {
	w       *fsnotify.Watcher
	log     *slog.Logger
	dirs    map[string]bool // directories whose lease-named files count
	files   map[string]bool // files that count whatever their names
	targets []string        // every directory to watch: dirs and the files' directories
	changes chan struct{}
	done    chan struct{} // closed when the loop has returned
	once    sync.Once

	watched map[string]bool // paths with an inotify watch; used by the loop only after newFSWatcher returns
}

// newFSWatcher starts watching. dirs and files are clean absolute paths.
func newFSWatcher(dirs, files []string, log *slog.Logger) (*fsWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fsWatcher{
		w: w, log: log,
		dirs: map[string]bool{}, files: map[string]bool{},
		changes: make(chan struct{}, 1), done: make(chan struct{}),
		watched: map[string]bool{},
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		fw.dirs[d] = true
		if !seen[d] {
			seen[d] = true
			fw.targets = append(fw.targets, d)
		}
	}
	for _, f := range files {
		fw.files[f] = true
		if d := filepath.Dir(f); !seen[d] {
			seen[d] = true
			fw.targets = append(fw.targets, d)
		}
	}
	fw.sync()
	go fw.loop()
	return fw, nil
}

func (fw *fsWatcher) Changes() <-chan struct{} { return fw.changes }

// Close stops watching and waits for the loop to return. It may be called
// more than once.
func (fw *fsWatcher) Close() error {
	var err error
	fw.once.Do(func() { err = fw.w.Close() })
	<-fw.done
	return err
}

func (fw *fsWatcher) loop() {
	defer close(fw.done)
	for {
		select {
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if ev.Op&^fsnotify.Chmod == 0 {
				continue
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				if fw.watched[ev.Name] {
					// Gone or moved away: the watch, if any is left,
					// no longer watches this path.
					_ = fw.w.Remove(ev.Name)
					delete(fw.watched, ev.Name)
				}
			}
			structural := fw.onTargetPath(ev.Name)
			if structural {
				fw.sync()
			}
			if structural || fw.relevant(ev.Name) {
				fw.signal()
			}
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				fw.log.Warn("inotify queue overflowed; re-reading the lease files")
			} else {
				fw.log.Warn("watching lease files", "error", err)
			}
			fw.signal()
		}
	}
}

func (fw *fsWatcher) signal() {
	select {
	case fw.changes <- struct{}{}:
	default: // one is pending already
	}
}

// relevant reports whether a change of path may change a lease.
func (fw *fsWatcher) relevant(path string) bool {
	return fw.files[path] || (fw.dirs[filepath.Dir(path)] && IsLeaseFileName(filepath.Base(path)))
}

// onTargetPath reports whether path is a watched directory or one of its
// parents: its creation, removal or renaming changes what to watch.
func (fw *fsWatcher) onTargetPath(path string) bool {
	for _, t := range fw.targets {
		if t == path || strings.HasPrefix(t, strings.TrimSuffix(path, "/")+"/") {
			return true
		}
	}
	return false
}

// sync watches, for each target directory, the directory itself or, while
// it does not exist, its nearest existing parent, and drops the watches no
// longer needed. A directory created while this runs is caught by the next
// round or by the event its creation sends to the parent; one removed
// while this runs by the next round. The rounds are bounded in case the
// tree keeps changing; the next event calls sync again.
func (fw *fsWatcher) sync() {
	for range 32 {
		want := map[string]bool{}
		for _, t := range fw.targets {
			want[nearestDir(t)] = true
		}
		changed := false
		for p := range want {
			if fw.watched[p] {
				continue
			}
			if err := fw.w.Add(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
					changed = true // removed meanwhile: look again
				} else {
					fw.log.Warn("cannot watch a lease directory", "dir", p, "error", err)
				}
				continue
			}
			fw.watched[p] = true
			changed = true
			fw.log.Debug("watching", "dir", p)
		}
		for p := range fw.watched {
			if !want[p] {
				_ = fw.w.Remove(p) // fails when the directory is gone, which removed the watch
				delete(fw.watched, p)
				changed = true
			}
		}
		if !changed {
			return
		}
	}
}

// nearestDir returns dir if it is an existing directory, else its nearest
// parent that is.
func nearestDir(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
