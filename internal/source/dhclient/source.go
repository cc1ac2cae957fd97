package dhclient

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
)

// name is the source's name, the Source field of its events and the
// Backend of its reports.
const name = "dhclient"

const (
	// DefaultDebounce is how long the source waits after a change for more
	// changes before it reads the files.
	DefaultDebounce = 200 * time.Millisecond
	// debounceCap bounds, in debounce periods, how long a stream of writes
	// can put a read off.
	debounceCap = 10
	// maxFileSize bounds a lease file; dhclient rewrites its file after 20
	// leases, so a real one is a few KiB.
	maxFileSize = 16 << 20
	// maxSettle is how many reads in a row may find a file ending inside
	// a block (caught mid-write) before its complete blocks are believed.
	maxSettle = 3
	// maxLoggedErrors bounds the parse errors logged for one version of a
	// file.
	maxLoggedErrors = 10
	// maxExpiryWait bounds the wait for the next expiry: timers run on the
	// monotonic clock, which stops while the machine is suspended, and
	// lease times are wall-clock times.
	maxExpiryWait = 5 * time.Minute
)

// DefaultDirs are the lease directories of Debian and of RHEL.
var DefaultDirs = []string{"/var/lib/dhcp", "/var/lib/dhclient"}

// Options configure a Source.
type Options struct {
	// Dirs are the directories whose lease files are read; nil means
	// DefaultDirs and an empty slice none. A directory that does not
	// exist is waited for.
	Dirs []string
	// Files are lease files read whatever their names, such as
	// backends.dhclient.lease_file. A file that does not exist is waited
	// for.
	Files []string
	// Debounce coalesces bursts of writes; 0 means DefaultDebounce.
	Debounce time.Duration
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// Stats counts a Source's work over all its runs.
type Stats struct {
	Scans       uint64 // times the lease files were read and compared
	Reports     uint64 // reports sent, the startup replay included
	ParseErrors uint64 // blocks and statements rejected
}

// Source is the dhclient lease file source.
type Source struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	ifindex func(name string) (int, error)
	watch   func(dirs, files []string, log *slog.Logger) (watcher, error)

	scans       atomic.Uint64
	reports     atomic.Uint64
	parseErrors atomic.Uint64
}

// New returns a Source for opts. It reads and watches nothing: Run does.
func New(opts Options, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("debounce %s: must not be negative", opts.Debounce)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Dirs == nil {
		opts.Dirs = DefaultDirs
	}
	var err error
	if opts.Dirs, err = cleanPaths("lease directory", opts.Dirs); err != nil {
		return nil, err
	}
	if opts.Files, err = cleanPaths("lease file", opts.Files); err != nil {
		return nil, err
	}
	s := &Source{opts: opts, log: log.With("component", name), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.ifindex = func(name string) (int, error) {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return 0, err
		}
		return ifi.Index, nil
	}
	s.watch = func(dirs, files []string, log *slog.Logger) (watcher, error) {
		return newFSWatcher(dirs, files, log)
	}
	return s, nil
}

// cleanPaths checks that every path is absolute and returns them cleaned,
// without duplicates.
func cleanPaths(what string, paths []string) ([]string, error) {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s %q: must be an absolute path", what, p)
		}
		if p = filepath.Clean(p); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Name returns "dhclient".
func (s *Source) Name() string { return name }

// Stats returns the counters so far. It is safe to call at any time.
func (s *Source) Stats() Stats {
	return Stats{Scans: s.scans.Load(), Reports: s.reports.Load(), ParseErrors: s.parseErrors.Load()}
}

// Run watches the lease files and sends reports to out until ctx ends,
// then returns nil. It starts watching, reads the files and sends what
// they say as initial reports followed by one initial KindSync without a
// Dump, which marks the source ready; then it sends a report whenever one
// changes. It returns an error when it cannot watch at all.
func (s *Source) Run(ctx context.Context, out chan<- event.Event) error {
	w, err := s.watch(s.opts.Dirs, s.opts.Files, s.log)
	if err != nil {
		return fmt.Errorf("watch lease files: %w", err)
	}
	defer w.Close()
	s.log.Info("watching dhclient leases", "dirs", s.opts.Dirs, "files", s.opts.Files)

	r := &run{s: s, files: map[string]*fileState{}, last: map[string]reported{}}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	var pendingSince time.Time // when the burst being debounced began; zero if none

	scan := func(initial bool) error {
		evs, next, retry := r.scan(initial)
		for _, ev := range evs {
			select {
			case out <- ev:
				s.reports.Add(1)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		expiry.Stop()
		if !next.IsZero() {
			expiry.Reset(min(max(next.Sub(s.now()), 0), maxExpiryWait))
		}
		if retry && pendingSince.IsZero() {
			pendingSince = s.now()
			debounce.Reset(s.opts.Debounce)
		}
		return nil
	}

	if scan(true) != nil {
		return nil
	}
	select {
	case out <- event.Event{Source: name, Kind: event.KindSync, Time: s.now(), Initial: true}:
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Changes():
			now := s.now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			// Trailing debounce, but a stream of writes cannot put the
			// read off for more than debounceCap periods.
			wait := min(s.opts.Debounce, pendingSince.Add(debounceCap*s.opts.Debounce).Sub(now))
			debounce.Reset(max(wait, 0))
		case <-debounce.C:
			pendingSince = time.Time{}
			if scan(false) != nil {
				return nil
			}
		case <-expiry.C:
			if scan(false) != nil {
				return nil
			}
		}
	}
}

// run is the state of one Run.
type run struct {
	s     *Source
	files map[string]*fileState // by path
	last  map[string]reported   // the last report sent, by interface name
}

// fileState is what the source believes one lease file says.
type fileState struct {
	data   []byte    // the content last read
	mtime  time.Time // its modification time, which orders files
	leases []Lease   // the leases in use
	settle int       // reads in a row that found it ending inside a block
	err    string    // why it could not be read, logged once
}

// reported is the last report sent for an interface.
type reported struct {
	m  *event.Manager
	fp string // view.fingerprint of the leases it described
}

// scan reads the lease files, works out every interface's report and
// returns those that differ from the last ones sent, when the next lease
// expires (zero if none will) and whether a file must be read again.
func (r *run) scan(initial bool) (evs []event.Event, next time.Time, retry bool) {
	s := r.s
	s.scans.Add(1)
	present := map[string]bool{}
	for _, path := range r.listFiles() {
		present[path] = true
		if r.readFile(path) {
			retry = true
		}
	}
	for path := range r.files {
		if !present[path] {
			delete(r.files, path)
		}
	}

	// Older files first, so that later leases are newer.
	paths := slices.SortedFunc(maps.Keys(r.files), func(a, b string) int {
		return cmp.Or(r.files[a].mtime.Compare(r.files[b].mtime), cmp.Compare(a, b))
	})
	now := s.now()
	byIface := map[string]*ifaceLeases{}
	for _, path := range paths {
		for i := range r.files[path].leases {
			l := &r.files[path].leases[i]
			il := byIface[l.Interface]
			if il == nil {
				il = &ifaceLeases{}
				byIface[l.Interface] = il
			}
			if l.IPv6 {
				il.v6 = append(il.v6, l)
			} else {
				il.v4 = append(il.v4, l)
			}
			if e := l.Expire; e.After(now) && e.Before(Never) && (next.IsZero() || e.Before(next)) {
				next = e
			}
		}
	}

	names := slices.Sorted(maps.Keys(byIface))
	for n := range r.last {
		if byIface[n] == nil {
			names = append(names, n)
		}
	}
	for _, n := range names {
		evs = append(evs, r.report(n, byIface[n], now, initial)...)
	}
	return evs, next, retry
}

// report returns the events that bring what was last reported about the
// interface up to date with its leases (nil: it has none left).
func (r *run) report(iface string, il *ifaceLeases, now time.Time, initial bool) []event.Event {
	s := r.s
	prev, had := r.last[iface]
	ev := func(m *event.Manager) event.Event {
		return event.Event{Source: name, Kind: event.KindManager, Time: now, Initial: initial, Manager: m}
	}
	gone := func(p reported) event.Event {
		s.log.Info("no lease left", "interface", iface, "index", p.m.Index)
		return ev(&event.Manager{Backend: name, Index: p.m.Index, Name: iface, Gone: true})
	}
	if il == nil {
		delete(r.last, iface)
		return []event.Event{gone(prev)}
	}
	index, err := s.ifindex(iface)
	if err != nil {
		// Re-checked at the next change of the lease files.
		s.log.Debug("lease for an interface that does not exist here; not reported", "interface", iface, "error", err)
		return nil
	}
	v := viewOf(iface, il, now)
	m, notes := v.manager(index)
	fp := v.fingerprint()
	var evs []event.Event
	if had && prev.m.Index != index {
		// The interface was replaced: the old index is gone.
		evs = append(evs, gone(prev))
		had = false
	}
	if had && sameReport(prev.m, m) {
		return nil
	}
	if had && prev.m.States[stateProperty] == stateRoutable && v.state == stateRoutable && prev.fp != fp {
		m.Refresh = true
	}
	for _, n := range notes {
		s.log.Warn("lease value", "interface", iface, "problem", n)
	}
	attrs := []any{"interface", iface, "index", index, "state", v.state, "refresh", m.Refresh, "initial", initial}
	if v.v4 != nil {
		attrs = append(attrs, "address", v.v4.FixedAddress, "expire", jsonTime(v.v4.Expire))
	}
	if v.v6 != nil {
		attrs = append(attrs, "address6", joinStrings(v.v6.Addresses()), "expire6", jsonTime(v.v6.Expire))
	}
	if !had || prev.m.States[stateProperty] != v.state || m.Refresh {
		s.log.Info("lease", attrs...)
	} else {
		s.log.Debug("lease times changed", attrs...)
	}
	r.last[iface] = reported{m: m, fp: fp}
	return append(evs, ev(m))
}

// listFiles returns the lease files of the watched directories and the
// configured files that exist.
func (r *run) listFiles() []string {
	var out []string
	for _, d := range r.s.opts.Dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				r.s.log.Debug("cannot list a lease directory", "dir", d, "error", err)
			}
			continue
		}
		for _, e := range entries {
			if IsLeaseFileName(e.Name()) && (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	for _, f := range r.s.opts.Files {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// readFile reads and parses one lease file if it changed, and reports
// whether it must be read again because it ends inside a block.
func (r *run) readFile(path string) (retry bool) {
	s := r.s
	c := r.files[path]
	data, mtime, err := readLimited(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			delete(r.files, path)
			return false
		}
		if c == nil || c.err != err.Error() {
			s.log.Warn("cannot read a lease file", "file", path, "error", err)
		}
		r.files[path] = &fileState{err: err.Error(), mtime: mtime}
		return false
	}
	if c != nil && c.err == "" && c.settle == 0 && bytes.Equal(c.data, data) {
		c.mtime = mtime
		return false
	}
	leases, errs := parseLeases(data, path)
	truncated := slices.ContainsFunc(errs, func(err error) bool { return errors.Is(err, ErrTruncated) })
	if len(data) == 0 && c != nil && len(c.leases) > 0 {
		truncated = true // emptied: dhclient rewrites its file in place
	}
	if truncated && (c == nil || c.settle < maxSettle) {
		st := &fileState{data: data, mtime: mtime, leases: leases, settle: 1}
		if c != nil {
			st.settle = c.settle + 1
			if c.err == "" {
				st.leases = c.leases // keep what it said until it settles
			}
		}
		r.files[path] = st
		s.log.Debug("lease file ends inside a block; reading it again", "file", path, "attempt", st.settle)
		return true
	}
	for i, err := range errs {
		if i == maxLoggedErrors {
			s.log.Warn("more lease file errors not shown", "file", path, "count", len(errs)-i)
			break
		}
		s.log.Warn("lease file", "error", err)
	}
	s.parseErrors.Add(uint64(len(errs)))
	r.files[path] = &fileState{data: data, mtime: mtime, leases: leases}
	return false
}

// readLimited reads a regular file of at most maxFileSize bytes.
func readLimited(path string) ([]byte, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi.ModTime(), fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fi.ModTime(), err
	}
	if len(data) > maxFileSize {
		return nil, fi.ModTime(), fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return data, fi.ModTime(), nil
}
