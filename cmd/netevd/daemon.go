package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/netevd/netevd/internal/action/resolved"
	"github.com/netevd/netevd/internal/action/routing"
	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/config"
	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/pipeline"
	nlsource "github.com/netevd/netevd/internal/source/netlink"
	"github.com/netevd/netevd/internal/state"
	"github.com/netevd/netevd/internal/version"
)

type daemonOptions struct {
	configPath string
	logLevel   string
	logFormat  string
	dryRun     bool
}

// loadConfig resolves the config file, the environment and the flags into
// one validated Config.
func loadConfig(opts daemonOptions) (*config.Config, error) {
	cfg, err := config.Resolve(opts.configPath, os.Getenv)
	if err != nil {
		return nil, err
	}
	if opts.logLevel != "" {
		cfg.System.LogLevel = opts.logLevel
	}
	if opts.logFormat != "" {
		cfg.System.LogFormat = opts.logFormat
	}
	return cfg, nil
}

func scriptConfig(cfg *config.Config, dryRun bool) script.Config {
	return script.Config{
		Dir:              cfg.System.ScriptsDir,
		Timeout:          cfg.Scripts.Timeout,
		KillGrace:        cfg.Scripts.KillGrace,
		AllowUnsafeNames: cfg.System.AllowUnsafeNames,
		DryRun:           dryRun,
	}
}

func runDaemon(ctx context.Context, opts daemonOptions) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	level, err := parseLevel(cfg.System.LogLevel)
	if err != nil {
		return err
	}
	lv := new(slog.LevelVar)
	lv.Set(level)
	log, err := newLogger(os.Stderr, cfg.System.LogFormat, lv)
	if err != nil {
		return err
	}
	log.Info("starting", "version", version.String(), "config", opts.configPath,
		"config_read", cfg.Source.Read, "dry_run", opts.dryRun)

	backend, why := chooseBackend(ctx, cfg)
	mgr, err := managerSource(backend, cfg, log)
	if errors.Is(err, errNotBuilt) {
		log.Warn("backend not supported by this build; using kernel events only", "configured", backend)
		backend, why, mgr, err = config.BackendNone, "fallback", nil, nil
	}
	if err != nil {
		return fmt.Errorf("backend %s: %w", backend, err)
	}
	log.Info("backend", "backend", backend, "why", why)
	runner, err := script.New(scriptConfig(cfg, opts.dryRun), log)
	if err != nil {
		return err
	}
	if !opts.dryRun {
		if err := runner.EnsureDirs(); err != nil {
			return err
		}
	}
	src, err := nlsource.New(nlsource.Options{}, log)
	if err != nil {
		return err
	}
	sources := []pipeline.Source{src}
	if mgr != nil {
		sources = append(sources, mgr)
	}
	actions := []pipeline.Action{runner}
	var router *routing.Action
	if r := cfg.Routing; len(r.PolicyRules) > 0 || len(r.Routes) > 0 {
		router, err = routing.New(routingOptions(cfg, opts.dryRun), log)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := router.Close(cctx); err != nil {
				log.Error("removing policy rules", "error", err)
			}
		}()
		// Before the script runner, so a script in routable.d finds the
		// rules in place.
		actions = append([]pipeline.Action{router}, actions...)
	}
	if d := cfg.Backends.Dhclient; d.UseDNS || d.UseDomain || d.UseHostname {
		if opts.dryRun {
			log.Info("dry run: not pushing DNS, domains or hostname to systemd-resolved/hostnamed")
		} else {
			rs, err := resolved.New(resolved.Options{UseDNS: d.UseDNS, UseDomain: d.UseDomain,
				UseHostname: d.UseHostname, HostnameMethod: d.HostnameMethod}, log)
			if err != nil {
				return err
			}
			// Run re-pushes when resolved (re)appears on the bus.
			rctx, rstop := context.WithCancel(ctx)
			rdone := make(chan struct{})
			go func() { defer close(rdone); _ = rs.Run(rctx) }()
			defer func() { rstop(); <-rdone; rs.Close() }()
			// First, so a script in routable.d finds the link's DNS in place.
			actions = append([]pipeline.Action{rs}, actions...)
		}
	}

	var current atomic.Pointer[config.Config]
	current.Store(cfg)
	start := time.Now()
	var (
		p      *pipeline.Pipeline
		syncWG sync.WaitGroup
	)
	p = pipeline.New(pipeline.Config{
		Sources: sources,
		Actions: actions,
		Model:   state.New(backend),
		Admit: func(c event.Change) bool {
			return c.Link.Index == 0 || current.Load().Monitored(c.Link.Name)
		},
		MaxParallel: cfg.Scripts.MaxParallel,
		Log:         log,
		OnReady: func() {
			links := p.Model().Snapshot()
			log.Info("ready", "links", len(links), "startup", time.Since(start).Round(time.Microsecond))
			if router != nil {
				// The startup replay configured the links present; this
				// also removes what a previous run left behind.
				syncWG.Go(func() {
					if err := router.Sync(ctx, links); err != nil {
						log.Error("policy routing sync", "error", err)
					}
				})
			}
			notify(log, daemon.SdNotifyReady)
		},
	})

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go reloadOnHUP(ctx, opts, &current, lv, log)
	// STOPPING=1 goes out as soon as shutdown begins, before the drain;
	// runDaemon waits for it so the process never exits first.
	stopping := make(chan struct{})
	go func() {
		defer close(stopping)
		<-ctx.Done()
		log.Info("stopping")
		notify(log, daemon.SdNotifyStopping)
	}()

	runErr := p.Run(ctx)
	syncWG.Wait() // before router.Close
	stop()        // a failed source ends Run without a signal
	<-stopping
	st := p.Stats()
	log.Info("stopped", "events", st.Events, "changes", st.Changes, "coalesced", st.Coalesced,
		"action_runs", st.ActionRuns, "action_errors", st.ActionErrors, "dropped", st.Dropped)
	return runErr
}

// routingOptions maps the routing section of the config onto the routing
// action's options.
func routingOptions(cfg *config.Config, dryRun bool) routing.Options {
	r := cfg.Routing
	return routing.Options{
		Interfaces:  r.PolicyRules,
		TableBase:   uint32(r.TableBase),
		PriorityMin: uint32(r.RulePriority.Min),
		PriorityMax: uint32(r.RulePriority.Max),
		KeepOnExit:  r.KeepOnExit,
		DryRun:      dryRun,
		Routes:      staticRoutes(r.Routes),
	}
}

// staticRoutes maps routing.routes (validated) onto the routing action's
// routes.
func staticRoutes(in []config.Route) []routing.Route {
	var out []routing.Route
	for i, r := range in {
		rr := routing.Route{
			Name:        fmt.Sprintf("routing.routes[%d]", i),
			Interface:   r.Interface,
			Destination: r.Destination,
			Gateway:     r.Gateway,
			Type:        r.Type,
			Metric:      uint32(r.Metric),
			Src:         r.Src,
			Pref:        r.Pref,
			Table:       uint32(r.Table),
		}
		for _, h := range r.NextHops {
			rr.NextHops = append(rr.NextHops, routing.NextHop{Gateway: h.Gateway, Interface: h.Interface, Weight: h.Weight})
		}
		out = append(out, rr)
	}
	return out
}

func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", "state", state, "error", err)
	}
}

// reloadOnHUP rebuilds the config on SIGHUP. The new config is validated in
// full before it replaces the old one; on any error the old one stays.
// monitoring.* and the log level take effect at once; other keys need a
// restart, and the log says which.
func reloadOnHUP(ctx context.Context, opts daemonOptions, current *atomic.Pointer[config.Config], lv *slog.LevelVar, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		notify(log, daemon.SdNotifyReloading)
		next, err := loadConfig(opts)
		if err == nil {
			var level slog.Level
			if level, err = parseLevel(next.System.LogLevel); err == nil {
				lv.Set(level)
			}
		}
		if err != nil {
			log.Error("reload failed; keeping the running config", "error", err)
			notify(log, daemon.SdNotifyReady)
			continue
		}
		old := current.Swap(next)
		var restart []string
		for _, key := range config.Diff(old, next) {
			if !strings.HasPrefix(key, "monitoring.") && key != "system.log_level" {
				restart = append(restart, key)
			}
		}
		if len(restart) > 0 {
			log.Warn("reloaded; these changes take effect at the next restart", "keys", strings.Join(restart, ","))
		} else {
			log.Info("reloaded")
		}
		notify(log, daemon.SdNotifyReady)
	}
}
