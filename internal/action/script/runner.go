package script

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netevd/netevd/internal/event"
)

// Defaults for the zero values of Config.
const (
	DefaultDir       = "/etc/netevd"
	DefaultTimeout   = 30 * time.Second
	DefaultKillGrace = 5 * time.Second
	DefaultMaxOutput = 64 << 10
)

// Config configures a Runner. Zero values mean the defaults.
type Config struct {
	// Dir is the scripts root holding the *.d directories; an absolute
	// path. Default /etc/netevd.
	Dir string
	// Timeout is how long one script may run before its process group is
	// terminated. Default 30s.
	Timeout time.Duration
	// KillGrace is how long a process group has between SIGTERM and
	// SIGKILL, at a timeout and at shutdown; also how long output held open
	// by a background process is still read after a script exited.
	// Default 5s.
	KillGrace time.Duration
	// AllowUnsafeNames runs scripts also for interfaces whose names fail
	// ValidName, passing the name unchanged (exec involves no shell).
	AllowUnsafeNames bool
	// DryRun logs what would run, with the complete environment and JSON,
	// and runs nothing.
	DryRun bool
	// MaxOutput is how many bytes of each stream (stdout, stderr) of one
	// script run are logged; the rest is read and discarded. Default 64 KiB.
	MaxOutput int
}

// Stats are the Runner's counters since New.
type Stats struct {
	// Runs counts scripts the runner tried to execute (not in dry-run mode).
	Runs uint64
	// Failures counts runs that did not exit 0: non-zero exit, death by a
	// signal, timeout, or failure to start. Runs interrupted because the
	// Handle context ended (shutdown) are not failures.
	Failures uint64
	// Timeouts counts runs killed at Config.Timeout (also in Failures).
	Timeouts uint64
	// Refused counts changes for which scripts were found but none ran
	// because a value was unsafe: an interface name failing ValidName, or a
	// variable that would contain NUL or a line break.
	Refused uint64
}

// Runner runs the scripts in the directories a Change selects. It
// implements pipeline.Action and is safe for concurrent use; Handle may run
// for different links at the same time.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	baseEnv []string          // PATH, LANG, TZ
	dirPath map[string]string // StandardDirs name → absolute path

	runs, failures, timeouts, refused atomic.Uint64

	mu sync.Mutex // guards the fields below
	// reported holds, per directory path, the refusals already logged (by
	// entry path), so each is logged once per version of the file.
	reported map[string]map[string]stamp
}

// New returns a Runner for cfg. It starts nothing and touches no file;
// LANG and TZ are read from the daemon's environment now.
func New(cfg Config, log *slog.Logger) (*Runner, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("scripts directory %q: not an absolute path", cfg.Dir)
	}
	cfg.Dir = filepath.Clean(cfg.Dir)
	if cfg.Timeout < 0 || cfg.KillGrace < 0 || cfg.MaxOutput < 0 {
		return nil, errors.New("script timeout, kill grace and max output must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		cfg:      cfg,
		log:      log.With("component", "script"),
		baseEnv:  baseEnv(),
		dirPath:  make(map[string]string, len(StandardDirs)),
		reported: make(map[string]map[string]stamp),
	}
	for _, d := range StandardDirs {
		r.dirPath[d] = filepath.Join(cfg.Dir, d)
	}
	return r, nil
}

// Name returns "script".
func (r *Runner) Name() string { return "script" }

// Stats returns the current counters.
func (r *Runner) Stats() Stats {
	return Stats{
		Runs:     r.runs.Load(),
		Failures: r.failures.Load(),
		Timeouts: r.timeouts.Load(),
		Refused:  r.refused.Load(),
	}
}

// Handle runs, one after another, every script in the directories DirsFor
// selects for c (in lexical order per directory). A failing script does
// not stop the next one.
//
// It returns nil when every script exited 0, when none exist, and when the
// change was refused (refusals are logged and counted in Stats().Refused,
// not returned). Otherwise the error summarises the failures, e.g.
// "2 of 3 scripts failed: /etc/netevd/routable.d/10-a: exit status 1, ...".
// When ctx ends, the running script's process group is terminated, no
// further script starts, and the error wraps ctx.Err().
//
// When no directory selected by c holds an entry, Handle starts no process
// and does a constant amount of work.
func (r *Runner) Handle(ctx context.Context, c event.Change) error {
	dirs := DirsFor(c)
	if len(dirs) == 0 {
		switch c.Type {
		case event.LinkRenamed:
			r.log.Info("link renamed; no scripts run for renames",
				"old_name", strconv.Quote(c.OldName), "name", strconv.Quote(c.Link.Name), "ifindex", c.Link.Index)
		default:
			if r.log.Enabled(ctx, slog.LevelDebug) {
				r.log.Debug("no script directory for this change",
					"event", c.Type.String(), "state", c.Link.State, "ifindex", c.Link.Index)
			}
		}
		return nil
	}
	var scripts []string
	for _, d := range dirs {
		scripts = r.collect(ctx, d, scripts)
	}
	if len(scripts) == 0 {
		return nil
	}

	managerItself := c.Type == event.ManagerStateChanged && c.Link.Index == 0
	if !r.cfg.AllowUnsafeNames && !managerItself && !ValidName(c.Link.Name) {
		r.refused.Add(1)
		r.log.Warn("refusing event for interface with unsafe name",
			"name", strconv.Quote(c.Link.Name), "event", c.Type.String(), "ifindex", c.Link.Index,
			"event_id", c.ID, "scripts", len(scripts))
		return nil
	}
	c = r.describe(ctx, c)
	env, err := r.Environ(c)
	if err != nil {
		r.refused.Add(1)
		r.log.Warn("refusing event with unsafe value", "error", err,
			"event", c.Type.String(), "ifindex", c.Link.Index, "event_id", c.ID, "scripts", len(scripts))
		return nil
	}
	payload, err := json.Marshal(NewPayload(c))
	if err != nil {
		return fmt.Errorf("encode event for scripts: %w", err)
	}

	if r.cfg.DryRun {
		for _, p := range scripts {
			r.log.Info("dry run: would run script", "script", p, "link", c.Link.Name,
				"event", c.Type.String(), "event_id", c.ID, "env", env, "json", string(payload))
		}
		return nil
	}

	var failed []string
	for i, p := range scripts {
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d scripts not run: %w", len(scripts)-i, len(scripts), ctx.Err())
		}
		res := r.runOne(ctx, p, env, payload, c)
		if res.canceled {
			return fmt.Errorf("script %s interrupted, %d of %d scripts not run: %w",
				p, len(scripts)-i-1, len(scripts), ctx.Err())
		}
		if res.failed() {
			failed = append(failed, p+": "+res.String())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d scripts failed: %s", len(failed), len(scripts), strings.Join(failed, ", "))
	}
	return nil
}

// describeTimeout bounds the wait for a manager's description of a link.
const describeTimeout = 5 * time.Second

// describe asks the manager for its description of the link when it offers
// one (event.Manager.Describe) and returns c with the result in the
// manager's variables as JSON. It is called only when scripts will run. On
// failure the scripts run without JSON and the log says why.
func (r *Runner) describe(ctx context.Context, c event.Change) event.Change {
	m := c.Link.Manager
	if m == nil || m.Describe == nil {
		return c
	}
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	js, err := m.Describe(dctx)
	if err != nil {
		r.log.Warn("manager did not describe the link; scripts run without JSON",
			"backend", m.Backend, "ifindex", c.Link.Index, "event_id", c.ID, "error", err)
		return c
	}
	cp := *m
	cp.Env = make(map[string]string, len(m.Env)+1)
	maps.Copy(cp.Env, m.Env)
	cp.Env["JSON"] = js
	c.Link.Manager = &cp
	return c
}

// runOne runs one script, logs how it ended and counts it.
func (r *Runner) runOne(ctx context.Context, path string, env []string, payload []byte, c event.Change) result {
	log := r.log.With("script", path, "link", c.Link.Name, "event_id", c.ID)
	r.runs.Add(1)
	res := r.run(ctx, path, env, payload, log)
	if res.failed() {
		r.failures.Add(1)
	}
	if res.timedOut {
		r.timeouts.Add(1)
	}
	attrs := []slog.Attr{
		slog.String("event", c.Type.String()),
		slog.Int("exit_code", res.exitCode),
		slog.Float64("duration_ms", float64(res.duration.Microseconds())/1000),
	}
	level := slog.LevelInfo
	if res.startErr != nil {
		attrs = append(attrs, slog.String("error", res.startErr.Error()))
	}
	if res.signal != "" {
		attrs = append(attrs, slog.String("signal", res.signal))
	}
	if res.timedOut {
		attrs = append(attrs, slog.Bool("timed_out", true), slog.Duration("timeout", r.cfg.Timeout))
	}
	if res.canceled {
		attrs = append(attrs, slog.Bool("canceled", true))
	}
	if res.failed() || res.canceled {
		level = slog.LevelWarn
	}
	log.LogAttrs(ctx, level, "script finished", attrs...)
	return res
}

// collect appends to scripts the paths of the entries of directory name
// that run, and logs the others: skipped ones at debug level, refused ones
// at warn level once per version of the file.
func (r *Runner) collect(ctx context.Context, name string, scripts []string) []string {
	dir, ok := r.dirPath[name]
	if !ok {
		// A manager state outside StandardDirs (NetworkManager's
		// unavailable.d, ip-config.d, ...); DirsFor only names plain words.
		dir = filepath.Join(r.cfg.Dir, name)
	}
	entries, dirStamp, err := scanDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if r.log.Enabled(ctx, slog.LevelDebug) {
				r.log.Debug("no script directory", "dir", dir)
			}
		} else {
			r.log.Warn("cannot read script directory", "dir", dir, "error", err)
		}
		r.report(dir, nil, stamp{})
		return scripts
	}
	var refusedNow []entry
	for _, e := range entries {
		switch {
		case e.Runs:
			scripts = append(scripts, e.Path)
		case e.Skipped:
			if r.log.Enabled(ctx, slog.LevelDebug) {
				r.log.Debug("skipping script", "script", e.Path, "reason", e.Reason)
			}
		default:
			refusedNow = append(refusedNow, e)
		}
	}
	r.report(dir, refusedNow, dirStamp)
	return scripts
}

// report logs the refusals in dir that were not logged before for the
// same version of the file, and forgets those that no longer apply.
func (r *Runner) report(dir string, refused []entry, dirStamp stamp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.reported[dir]
	if len(old) == 0 && len(refused) == 0 && dirStamp.reason == "" {
		return // the common case: nothing refused now or before
	}
	now := make(map[string]stamp, len(refused)+1)
	if dirStamp.reason != "" {
		now[dir] = dirStamp
		if old[dir] != dirStamp {
			r.log.Warn("refusing script directory", "dir", dir, "reason", dirStamp.reason)
		}
	}
	for _, e := range refused {
		now[e.Path] = e.stamp
		if old[e.Path] != e.stamp && e.stamp != dirStamp {
			r.log.Warn("refusing script", "script", e.Path, "reason", e.Reason)
		}
	}
	if len(now) == 0 {
		delete(r.reported, dir)
		return
	}
	r.reported[dir] = now
}
