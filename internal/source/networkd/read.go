package networkd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/netevd/netevd/internal/sdbus"
)

// Reading networkd's state: the snapshot of everything, background reads
// of single objects, the state files, link descriptions.

// readResult is what a background read of object o (ifindex idx) found.
type readResult struct {
	idx  int
	o    *object
	t    time.Time // when the signal that asked for it arrived
	all  map[string]any
	seq  uint64 // the GetAll reply's sequence number
	name string // the link's name, if it was asked for
	err  error
}

// readLater starts a background read of o's properties (GetAll) unless one
// is in flight. Its result comes back on r.reads to readDone, in the
// session's loop; the read itself touches nothing of the runner's.
func (r *runner) readLater(ctx context.Context, idx int, o *object, t time.Time) {
	if o.reading {
		return
	}
	o.reading = true
	r.s.reads.Add(1)
	iface := ifaceLink
	if idx == 0 {
		iface = ifaceManager
	}
	b, reads, path, needName := r.bus, r.reads, o.path, idx != 0 && o.name == ""
	r.wg.Go(func() {
		res := readResult{idx: idx, o: o, t: t}
		res.all, res.seq, res.err = getAll(ctx, b, path, iface)
		if res.err == nil && needName {
			res.name = linkName(ctx, b, idx)
		}
		select {
		case reads <- res:
		case <-ctx.Done():
		}
	})
}

// readDone applies a background read and reports the object.
func (r *runner) readDone(ctx context.Context, res readResult) {
	o := res.o
	if r.objs[res.idx] != o {
		return // reported gone meanwhile
	}
	o.reading = false
	if res.err != nil {
		if errors.Is(res.err, errMalformed) {
			r.s.malformed.Add(1)
		}
		switch {
		case !o.pending:
			r.s.log.Debug("re-read after invalidated properties", "path", o.path, "error", res.err)
		case gone(res.err):
			delete(r.objs, res.idx) // removed already; a late signal
		default:
			// The next signal on it tries again.
			delete(r.objs, res.idx)
			r.s.log.Warn("read link properties", "index", res.idx, "path", o.path, "error", res.err)
		}
		return
	}
	o.replace(res.all, res.seq)
	if res.name != "" {
		o.name = res.name
	}
	o.pending = false
	r.emit(ctx, res.idx, o, res.t, false)
}

// snapshot reads the Manager and every link and reports them all (as
// initial reports before the first KindSync); links the source knew and
// networkd no longer lists are reported Gone.
func (r *runner) snapshot(ctx context.Context) error {
	initial := !r.synced
	now := time.Now()
	mgr := r.objs[0]
	if mgr == nil {
		mgr = newObject(managerPath)
	}
	if err := r.read(ctx, mgr, ifaceManager); err != nil {
		return err
	}
	mgr.pending = false
	r.objs[0] = mgr
	links, err := r.listLinks(ctx)
	if err != nil {
		return err
	}
	seen := map[int]bool{0: true}
	for _, l := range links {
		o := r.objs[l.index]
		if o == nil {
			o = newObject(l.path)
		}
		o.path, o.name = l.path, l.name
		if err := r.read(ctx, o, ifaceLink); err != nil {
			if gone(err) {
				continue // removed since ListLinks
			}
			return err
		}
		o.pending = false
		r.objs[l.index] = o
		seen[l.index] = true
	}
	r.s.snapshots.Add(1)
	for _, idx := range slices.Sorted(maps.Keys(r.objs)) {
		if !seen[idx] {
			r.gone(ctx, idx, now)
			continue
		}
		r.emit(ctx, idx, r.objs[idx], now, initial)
	}
	r.up(len(links))
	return nil
}

type linkRef struct {
	index int
	name  string
	path  string
}

// listLinks calls Manager.ListLinks: a(iso), (ifindex, name, object path).
func (r *runner) listLinks(ctx context.Context) ([]linkRef, error) {
	out, err := r.call(ctx, managerPath, ifaceManager+".ListLinks")
	if err != nil {
		return nil, err
	}
	var links []linkRef
	arr, ok := out[0].([]any)
	if !ok && out[0] != nil {
		r.s.malformed.Add(1)
		return nil, fmt.Errorf("ListLinks: reply is %T, want an array", out[0])
	}
	for _, e := range arr {
		f, ok := e.([]any)
		if !ok || len(f) != 3 {
			r.s.malformed.Add(1)
			return nil, fmt.Errorf("ListLinks: entry %v, want (ifindex, name, path)", e)
		}
		idx, ok1 := f[0].(int32)
		nm, ok2 := f[1].(string)
		path, ok3 := f[2].(string)
		if !ok1 || !ok2 || !ok3 || idx <= 0 {
			r.s.malformed.Add(1)
			return nil, fmt.Errorf("ListLinks: entry %v, want (ifindex, name, path)", e)
		}
		links = append(links, linkRef{int(idx), nm, path})
	}
	return links, nil
}

// read replaces o's properties with a GetAll of iface.
func (r *runner) read(ctx context.Context, o *object, iface string) error {
	all, seq, err := getAll(ctx, r.bus, o.path, iface)
	if err != nil {
		if errors.Is(err, errMalformed) {
			r.s.malformed.Add(1)
		}
		return err
	}
	o.replace(all, seq)
	return nil
}

// errMalformed marks replies without the expected shape.
var errMalformed = errors.New("unexpected reply")

// getAll reads the properties of iface of the object at path, and the
// sequence number of the reply.
func getAll(ctx context.Context, b bus, path, iface string) (map[string]any, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, seq, err := b.CallSeq(ctx, busName, path, ifaceProps+".GetAll", iface)
	if err != nil {
		return nil, 0, err
	}
	var all map[string]any
	ok := len(out) == 1
	if ok {
		all, ok = out[0].(map[string]any)
	}
	if !ok {
		return nil, 0, fmt.Errorf("%s GetAll %s: reply %v, want a dictionary: %w", path, iface, out, errMalformed)
	}
	return all, seq, nil
}

// linkName asks networkd for the name of link idx (Manager.GetLinkByIndex);
// "" if it cannot say.
func linkName(ctx context.Context, b bus, idx int) string {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, _, err := b.CallSeq(ctx, busName, managerPath, ifaceManager+".GetLinkByIndex", int32(idx))
	if err != nil || len(out) != 2 {
		return ""
	}
	name, _ := out[0].(string)
	return name
}

// call calls a method of networkd and checks that it returned a value.
func (r *runner) call(ctx context.Context, path, method string, args ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, _, err := r.bus.CallSeq(ctx, busName, path, method, args...)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		r.s.malformed.Add(1)
		return nil, fmt.Errorf("%s %s: empty reply", path, method)
	}
	return out, nil
}

func (r *runner) hasOwner(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, _, err := r.bus.CallSeq(ctx, busDaemon, busDaemonPath, busDaemon+".NameHasOwner", busName)
	if err != nil {
		return false, err
	}
	var owned bool
	ok := len(out) == 1
	if ok {
		owned, ok = out[0].(bool)
	}
	if !ok {
		return false, fmt.Errorf("NameHasOwner %s: reply %v, want a boolean", busName, out)
	}
	return owned, nil
}

// gone reports whether err says that the object no longer exists.
func gone(err error) bool {
	var reply *sdbus.ErrorReply
	return errors.As(err, &reply) && (reply.Name == errUnknownObj || reply.Name == errUnknownIfc)
}

// linkDNS returns the DNS servers and search domains of link idx from its
// state file; none if it cannot be read.
func (s *Source) linkDNS(idx int) ([]netip.Addr, []string) {
	dns, domains, err := readStateFile(s.netifDir, idx)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Debug("read networkd state file", "index", idx, "error", err)
	}
	return dns, domains
}

// describer returns the Describe function of a report on link idx.
func (s *Source) describer(idx int, path string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		js, err := s.describe(ctx, path)
		if err != nil {
			s.describeErrors.Add(1)
			return "", fmt.Errorf("systemd-networkd link %d: %w", idx, err)
		}
		return js, nil
	}
}

// describe calls Link.Describe for the link at path on the current
// connection and returns the description as one compact line. It is safe
// for concurrent use.
func (s *Source) describe(ctx context.Context, path string) (string, error) {
	if s.noDescribe.Load() {
		return "", errNoDescribe
	}
	ref := s.conn.Load()
	if ref == nil {
		return "", errNoConn
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := time.Now()
	out, _, err := ref.CallSeq(ctx, busName, path, ifaceLink+".Describe")
	s.describes.Add(1)
	s.describeNanos.Add(uint64(time.Since(start)))
	if err != nil {
		var reply *sdbus.ErrorReply
		if errors.As(err, &reply) && reply.Name == errUnknownMeth && s.noDescribe.CompareAndSwap(false, true) {
			s.log.Info("systemd-networkd cannot describe links (before systemd 248): scripts get no JSON", "error", err)
		}
		return "", err
	}
	var text string
	ok := len(out) == 1
	if ok {
		text, ok = out[0].(string)
	}
	if !ok {
		s.malformed.Add(1)
		return "", fmt.Errorf("Link.Describe: reply %v, want a string: %w", out, errMalformed)
	}
	compact, err := compactDescription(text)
	if err != nil {
		s.malformed.Add(1)
		return "", err
	}
	if len(compact) > maxJSON {
		return "", fmt.Errorf("description of %d bytes is too long for $JSON (at most %d)", len(compact), maxJSON)
	}
	return compact, nil
}
