package networkd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/netevd/netevd/internal/sdbus"
)

// Reading networkd's state: the snapshot of everything, single objects,
// link descriptions.

// readNew reads an object the source does not know yet and reports it.
func (r *runner) readNew(ctx context.Context, idx int, path string, t time.Time) {
	o := newObject(path)
	iface := ifaceLink
	if idx == 0 {
		iface = ifaceManager
	}
	if err := r.read(ctx, o, iface); err != nil {
		if !gone(err) {
			r.s.log.Warn("read link properties", "index", idx, "path", path, "error", err)
		}
		return
	}
	r.objs[idx] = o
	r.emit(ctx, idx, o, t, false, true)
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
		r.objs[l.index] = o
		seen[l.index] = true
	}
	r.s.snapshots.Add(1)
	for _, idx := range slices.Sorted(maps.Keys(r.objs)) {
		if !seen[idx] {
			r.gone(ctx, idx, now)
			continue
		}
		r.emit(ctx, idx, r.objs[idx], now, initial, true)
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
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, seq, err := r.bus.CallSeq(ctx, busName, o.path, ifaceProps+".GetAll", iface)
	if err != nil {
		return err
	}
	all, ok := out[0].(map[string]any)
	if len(out) != 1 || !ok {
		r.s.malformed.Add(1)
		return fmt.Errorf("%s GetAll %s: reply %v, want a dictionary", o.path, iface, out)
	}
	o.replace(all, seq)
	return nil
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
	owned, ok := out[0].(bool)
	if len(out) != 1 || !ok {
		return false, fmt.Errorf("NameHasOwner %s: reply %v, want a boolean", busName, out)
	}
	return owned, nil
}

// gone reports whether err says that the object no longer exists.
func gone(err error) bool {
	var reply *sdbus.ErrorReply
	return errors.As(err, &reply) && (reply.Name == errUnknownObj || reply.Name == errUnknownIfc)
}

// describe fetches networkd's description of link idx (JSON, DNS servers,
// search domains, name). Without Link.Describe it reads DNS servers and
// search domains from the link's state file instead.
func (r *runner) describe(ctx context.Context, idx int, o *object) {
	o.json = ""
	if r.noDescribe {
		r.fromStateFile(idx, o)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	start := time.Now()
	out, _, err := r.bus.CallSeq(cctx, busName, o.path, ifaceLink+".Describe")
	cancel()
	r.s.describes.Add(1)
	r.s.describeNanos.Add(uint64(time.Since(start)))
	var text string
	if err == nil {
		var ok bool
		if text, ok = out[0].(string); len(out) != 1 || !ok {
			err = fmt.Errorf("reply %v, want a string", out)
		}
	}
	var compact string
	var d description
	if err == nil {
		compact, d, o.dns, o.domains, err = parseDescription(text)
	}
	if err != nil {
		r.s.describeErrors.Add(1)
		var reply *sdbus.ErrorReply
		switch {
		case errors.As(err, &reply) && reply.Name == errUnknownMeth:
			r.noDescribe = true
			r.s.log.Info("systemd-networkd cannot describe links (before systemd 248): no JSON, DNS from state files", "error", err)
		case gone(err):
			r.s.log.Debug("describe a link that is gone", "index", idx, "error", err)
		default:
			r.s.log.Warn("describe link", "index", idx, "error", err)
		}
		r.fromStateFile(idx, o)
		return
	}
	if d.Name != "" {
		o.name = d.Name
	}
	if len(compact) > maxJSON {
		r.s.log.Warn("link description too long for $JSON; leaving it out", "index", idx, "name", o.name, "bytes", len(compact))
		return
	}
	o.json = compact
}

func (r *runner) fromStateFile(idx int, o *object) {
	dns, domains, err := readStateFile(r.s.netifDir, idx)
	if err != nil {
		r.s.log.Debug("read networkd state file", "index", idx, "error", err)
	}
	o.dns, o.domains = dns, domains
}
