package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Validate checks every value and returns every problem, each naming its
// key path and, when known, the file and line or the environment variable
// it came from (see Problems). It also rewrites the enumerated values to
// their canonical spelling ("WARNING" → "warn", "networkd" →
// "systemd-networkd"), so call it before using the config, after ApplyEnv.
func (c *Config) Validate() error {
	var l errorList
	c.validateSystem(&l)
	c.validateScripts(&l)
	c.validateMonitoring(&l)
	c.validateRouting(&l)
	c.validateBackends(&l)
	c.validateAPI(&l)
	c.validateMetricsAudit(&l)
	c.validateFilters(&l)
	l.sortByLine()
	return l.join()
}

func (c *Config) validateSystem(l *errorList) {
	s := &c.System
	if v, err := CanonicalLogLevel(s.LogLevel); err != nil {
		c.problemf(l, "system.log_level", nil, "%v", err)
	} else {
		s.LogLevel = v
	}
	switch v := strings.ToLower(s.LogFormat); v {
	case FormatText, FormatJSON:
		s.LogFormat = v
	default:
		c.problemf(l, "system.log_format", nil, "unknown log format %q (want text or json)", s.LogFormat)
	}
	if v, err := CanonicalBackend(s.Backend); err != nil {
		c.problemf(l, "system.backend", nil, "%v", err)
	} else {
		s.Backend = v
	}
	c.absPath(l, "system.scripts_dir", s.ScriptsDir, false)
}

func (c *Config) validateScripts(l *errorList) {
	s := c.Scripts
	if s.Timeout <= 0 {
		c.problemf(l, "scripts.timeout", nil, "must be a positive duration, got %v", s.Timeout)
	}
	if s.KillGrace <= 0 {
		c.problemf(l, "scripts.kill_grace", nil, "must be a positive duration, got %v", s.KillGrace)
	}
	if s.MaxParallel < 1 {
		c.problemf(l, "scripts.max_parallel", nil, "must be at least 1, got %d", s.MaxParallel)
	}
}

func (c *Config) validateMonitoring(l *errorList) {
	c.globs(l, "monitoring.interfaces", c.Monitoring.Interfaces)
	c.globs(l, "monitoring.ignore", c.Monitoring.Ignore)
}

func (c *Config) globs(l *errorList, key string, pats []string) {
	for i, p := range pats {
		k := fmt.Sprintf("%s[%d]", key, i)
		if err := checkGlob(p); err != nil {
			c.problemf(l, k, nil, "%v", err)
		}
	}
}

func checkGlob(p string) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("bad glob %q (path.Match syntax: * ? [a-z] \\x)", p)
	}
	return nil
}

func (c *Config) validateRouting(l *errorList) {
	r := c.Routing
	seen := map[string]int{}
	for i, name := range r.PolicyRules {
		k := fmt.Sprintf("routing.policy_rules[%d]", i)
		if err := checkGlob(name); err != nil {
			c.problemf(l, k, nil, "%v", err)
			continue
		}
		if !strings.ContainsAny(name, `*?[\`) && !ValidInterfaceName(name) {
			c.problemf(l, k, nil, "%q is not an interface name (1-15 of A-Z a-z 0-9 . _ -)", name)
			continue
		}
		if j, dup := seen[name]; dup {
			c.problemf(l, k, nil, "%q is listed twice (also routing.policy_rules[%d])", name, j)
			continue
		}
		seen[name] = i
	}
	if r.TableBase < 1 || r.TableBase > MaxTableBase {
		c.problemf(l, "routing.table_base", nil, "must be 1-%d so that table_base + ifindex fits a table number, got %d", MaxTableBase, r.TableBase)
	}
	p := r.RulePriority
	switch {
	case p.Min < 1 || p.Min > MaxRulePriority-1:
		c.problemf(l, "routing.rule_priority.min", nil, "must be 1-%d (0 is the local table's rule, 32766 main's; max must be above min), got %d", MaxRulePriority-1, p.Min)
	case p.Max < p.Min+1 || p.Max > MaxRulePriority:
		c.problemf(l, "routing.rule_priority.max", nil, "must be %d-%d (at least two priorities, before main's rule at 32766), got %d", p.Min+1, MaxRulePriority, p.Max)
	}
	c.validateRoutes(l)
}

// validateRoutes checks what can be checked of routing.routes before any
// interface is known: syntax, families, ranges and which fields go
// together. Whether a gateway is on its interface's subnet is checked
// when the route is applied.
func (c *Config) validateRoutes(l *errorList) {
	type routeKey struct {
		table, metric int64
		dst           netip.Prefix
	}
	seen := map[routeKey]int{}
	for i := range c.Routing.Routes {
		r := &c.Routing.Routes[i]
		k := fmt.Sprintf("routing.routes[%d]", i)
		at := []string{k}
		r.Type = strings.ToLower(r.Type)
		if r.Type == "" {
			r.Type = "unicast"
		}
		r.Pref = strings.ToLower(r.Pref)
		if !slices.Contains(RouteTypes, r.Type) {
			c.problemf(l, k+".type", at, "unknown route type %q (want %s)", r.Type, strings.Join(RouteTypes, ", "))
			continue
		}
		if r.Interface != "" && !ValidInterfaceName(r.Interface) {
			c.problemf(l, k+".interface", at, "%q is not an interface name (1-15 of A-Z a-z 0-9 . _ -; no globs)", r.Interface)
		}
		// The family: from the destination, else from the addresses.
		var fam int // 4 or 6; 0 unknown
		famOf := func(a netip.Addr) int {
			if a.Is4() {
				return 4
			}
			return 6
		}
		var dst netip.Prefix
		switch d := strings.ToLower(strings.TrimSpace(r.Destination)); {
		case d == "":
			c.problemf(l, k+".destination", at, `must be a prefix such as 192.0.2.0/24 or 2001:db8::/32, an address, or "default"`)
		case d == "default":
		default:
			var err error
			if dst, err = netip.ParsePrefix(d); err != nil {
				a, aerr := netip.ParseAddr(d)
				if aerr != nil || a.Zone() != "" {
					c.problemf(l, k+".destination", at, `%q is not a prefix such as 192.0.2.0/24 or 2001:db8::/32, an address, or "default"`, r.Destination)
					break
				}
				dst = netip.PrefixFrom(a, a.BitLen())
			}
			if dst.Addr().Is4In6() {
				c.problemf(l, k+".destination", at, "%q: write an IPv4 prefix without the ::ffff: form", r.Destination)
				dst = netip.Prefix{}
				break
			}
			if dst != dst.Masked() {
				c.problemf(l, k+".destination", at, "%q has host bits set (the network is %s)", r.Destination, dst.Masked())
				dst = netip.Prefix{}
				break
			}
			fam = famOf(dst.Addr())
		}
		addr := func(key, s string) (netip.Addr, bool) {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.Is4In6() {
				c.problemf(l, key, at, "%q is not an IP address", s)
				return netip.Addr{}, false
			}
			if fam == 0 {
				fam = famOf(a)
			} else if famOf(a) != fam {
				c.problemf(l, key, at, "%s is IPv%d but the route is IPv%d", a, famOf(a), fam)
				return netip.Addr{}, false
			}
			return a, true
		}
		unicast := r.Type == "unicast"
		if r.Gateway != "" {
			if !unicast {
				c.problemf(l, k+".gateway", at, "a %s route has no gateway", r.Type)
			} else if gw, ok := addr(k+".gateway", r.Gateway); ok && gw.IsUnspecified() {
				c.problemf(l, k+".gateway", at, "%s is not a gateway", gw)
			}
		}
		if len(r.NextHops) > 0 {
			switch {
			case !unicast:
				c.problemf(l, k+".nexthops", at, "a %s route has no next hops", r.Type)
			case r.Gateway != "":
				c.problemf(l, k+".nexthops", at, "gateway and nexthops exclude each other (one next hop: gateway; several: nexthops)")
			case len(r.NextHops) < 2:
				c.problemf(l, k+".nexthops", at, "needs two or more next hops (for one use gateway)")
			}
			hops := map[netip.Addr]int{}
			for j, h := range r.NextHops {
				hk := fmt.Sprintf("%s.nexthops[%d]", k, j)
				hat := []string{hk, k}
				if h.Gateway == "" {
					c.problemf(l, hk+".gateway", hat, "required: the next hop's gateway address")
				} else if gw, ok := addr(hk+".gateway", h.Gateway); ok {
					if o, dup := hops[gw]; dup {
						c.problemf(l, hk+".gateway", hat, "%s is listed twice (also %s.nexthops[%d])", gw, k, o)
					}
					hops[gw] = j
				}
				if h.Interface != "" && !ValidInterfaceName(h.Interface) {
					c.problemf(l, hk+".interface", hat, "%q is not an interface name (1-15 of A-Z a-z 0-9 . _ -; no globs)", h.Interface)
				}
				if h.Weight < 0 || h.Weight > 256 {
					c.problemf(l, hk+".weight", hat, "must be 1-256 (0 means 1), got %d", h.Weight)
				}
			}
		}
		if unicast && r.Gateway == "" && len(r.NextHops) == 0 && r.Interface == "" {
			c.problemf(l, k, nil, "a unicast route needs gateway, nexthops or interface (or type blackhole, unreachable or prohibit)")
		}
		if r.Src != "" {
			addr(k+".src", r.Src)
		}
		if r.Pref != "" {
			switch {
			case !slices.Contains(RoutePrefs, r.Pref):
				c.problemf(l, k+".pref", at, "unknown preference %q (want %s)", r.Pref, strings.Join(RoutePrefs, ", "))
			case fam == 4:
				c.problemf(l, k+".pref", at, "pref is for IPv6 routes only")
			case fam == 0:
				fam = 6
			}
		}
		if fam == 0 && !dst.IsValid() && strings.EqualFold(strings.TrimSpace(r.Destination), "default") {
			c.problemf(l, k+".destination", at, `"default" of which family? Give a gateway or src, or write 0.0.0.0/0 or ::/0`)
			continue
		}
		if r.Metric < 0 || r.Metric > MaxUint32 {
			c.problemf(l, k+".metric", at, "must be 0-%d, got %d", int64(MaxUint32), r.Metric)
		}
		if r.Table < 0 || r.Table > MaxUint32 || r.Table == 255 {
			c.problemf(l, k+".table", at, "must be 0 (main), 1-254 or 256-%d (255 is the local table), got %d", int64(MaxUint32), r.Table)
		}
		if fam == 0 {
			continue
		}
		if !dst.IsValid() {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if fam == 6 {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		}
		table := r.Table
		if table == 0 {
			table = 254
		}
		rk := routeKey{table: table, metric: r.Metric, dst: dst}
		if o, dup := seen[rk]; dup {
			c.problemf(l, k+".destination", at, "%s in table %d with metric %d is also routing.routes[%d]; one would replace the other", dst, table, r.Metric, o)
			continue
		}
		seen[rk] = i
	}
}

func (c *Config) validateBackends(l *errorList) {
	d := &c.Backends.Dhclient
	c.absPath(l, "backends.dhclient.lease_file", d.LeaseFile, false)
	for i, dir := range d.LeaseDirs {
		c.absPath(l, fmt.Sprintf("backends.dhclient.lease_dirs[%d]", i), dir, false)
	}
	switch m := strings.ToLower(strings.TrimSpace(d.HostnameMethod)); m {
	case HostnameStatic, HostnameTransient:
		d.HostnameMethod = m
	default:
		c.problemf(l, "backends.dhclient.hostname_method", nil, "unknown method %q (want static or transient)", d.HostnameMethod)
	}
}

func (c *Config) validateAPI(l *errorList) {
	a := c.API
	if _, err := netip.ParseAddr(a.BindAddress); err != nil {
		c.problemf(l, "api.bind_address", nil, "%q is not an IP address", a.BindAddress)
	}
	c.port(l, "api.port", a.Port)
	c.absPath(l, "api.socket", a.Socket, true)
	if a.TLS.Enabled {
		also := []string{"api.tls.enabled", "api.tls"}
		if a.TLS.CertFile == "" {
			c.problemf(l, "api.tls.cert_file", also, "required when api.tls.enabled is true")
		}
		if a.TLS.KeyFile == "" {
			c.problemf(l, "api.tls.key_file", also, "required when api.tls.enabled is true")
		}
	}
}

func (c *Config) validateMetricsAudit(l *errorList) {
	c.port(l, "metrics.port", c.Metrics.Port)
	c.absPath(l, "audit.path", c.Audit.Path, false)
	if c.Audit.RetentionDays < 0 {
		c.problemf(l, "audit.retention_days", nil, "must be 0 (keep all) or more, got %d", c.Audit.RetentionDays)
	}
}

func (c *Config) validateFilters(l *errorList) {
	for i := range c.Filters {
		f := &c.Filters[i]
		k := fmt.Sprintf("filters[%d]", i)
		switch v := strings.ToLower(f.Action); v {
		case ActionExecute, ActionIgnore, ActionLog:
			f.Action = v
		case "":
			c.problemf(l, k+".action", []string{k}, "required: execute, ignore or log")
		default:
			c.problemf(l, k+".action", []string{k}, "unknown action %q (want execute, ignore or log)", f.Action)
		}
		m := &f.MatchRule
		mk := k + ".match_rule"
		if m.InterfacePattern != "" {
			if err := checkGlob(m.InterfacePattern); err != nil {
				c.problemf(l, mk+".interface_pattern", nil, "%v", err)
			}
		}
		switch v := strings.ToLower(m.IPFamily); v {
		case "", FamilyIPv4, FamilyIPv6, FamilyAny:
			m.IPFamily = v
		default:
			c.problemf(l, mk+".ip_family", nil, "unknown IP family %q (want ipv4, ipv6 or any)", m.IPFamily)
		}
		if m.Backend != "" {
			v, err := CanonicalBackend(m.Backend)
			switch {
			case err != nil:
				c.problemf(l, mk+".backend", nil, "%v", err)
			case v == BackendAuto:
				c.problemf(l, mk+".backend", nil, "an event's backend is never %q; name the backend", BackendAuto)
			default:
				m.Backend = v
			}
		}
		for j, s := range f.Scripts {
			if strings.TrimSpace(s) == "" {
				c.problemf(l, fmt.Sprintf("%s.scripts[%d]", k, j), nil, "empty script name")
			}
		}
	}
}

func (c *Config) port(l *errorList, key string, p int) {
	if p < 1 || p > 65535 {
		c.problemf(l, key, nil, "must be a port between 1 and 65535, got %d", p)
	}
}

func (c *Config) absPath(l *errorList, key, p string, emptyOK bool) {
	switch {
	case p == "" && emptyOK:
	case p == "":
		c.problemf(l, key, nil, "must not be empty")
	case !filepath.IsAbs(p):
		c.problemf(l, key, nil, "must be an absolute path, got %q", p)
	}
}

// CanonicalLogLevel returns the canonical name (debug, info, warn, error)
// of a log level, accepting any case and the aliases "trace" (debug) and
// "warning" (warn).
func CanonicalLogLevel(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case LogDebug, LogInfo, LogWarn, LogError:
		return v, nil
	case "trace":
		return LogDebug, nil
	case "warning":
		return LogWarn, nil
	}
	return "", fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// SlogLevel returns the slog.Level of a canonical or aliased log level name,
// and slog.LevelInfo for an unknown one.
func SlogLevel(name string) slog.Level {
	v, _ := CanonicalLogLevel(name)
	switch v {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// CanonicalBackend returns the canonical name of a backend (one of the
// Backend* constants), comparing case-insensitively and accepting the
// aliases "networkd", "systemd_networkd" and "nm".
func CanonicalBackend(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		return BackendAuto, nil
	case "none":
		return BackendNone, nil
	case "systemd-networkd", "systemd_networkd", "networkd":
		return BackendNetworkd, nil
	case "networkmanager", "nm":
		return BackendNetworkManager, nil
	case "dhclient":
		return BackendDhclient, nil
	}
	return "", fmt.Errorf("unknown backend %q (want auto, none, systemd-networkd, NetworkManager or dhclient)", s)
}
