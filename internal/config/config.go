package config

import (
	"time"
)

// DefaultPath is where the daemon looks for its config when not told
// otherwise.
const DefaultPath = "/etc/netevd/netevd.yaml"

// Backend names, as Validate canonicalizes them. They are also the BACKEND
// value scripts see.
const (
	BackendAuto           = "auto"             // pick what is running (networkd, then NetworkManager, else none)
	BackendNone           = "none"             // the kernel (netlink) only
	BackendNetworkd       = "systemd-networkd" // alias "networkd"
	BackendNetworkManager = "NetworkManager"   // alias "nm"
	BackendDhclient       = "dhclient"
)

// Log levels and formats, as Validate canonicalizes them.
const (
	LogDebug = "debug" // alias "trace"
	LogInfo  = "info"
	LogWarn  = "warn" // alias "warning"
	LogError = "error"

	FormatText = "text"
	FormatJSON = "json"
)

// Filter actions and IP families.
const (
	ActionExecute = "execute" // run the scripts; the first deciding filter wins
	ActionIgnore  = "ignore"  // skip the scripts; the first deciding filter wins
	ActionLog     = "log"     // log the match and keep evaluating

	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
	FamilyAny  = "any"
)

// Config is the whole configuration. The yaml tags are the file's keys;
// Source is not part of the file.
//
// After Validate the enumerated strings (log level and format, backends,
// filter actions and IP families) hold their canonical spelling.
type Config struct {
	System     System     `yaml:"system"`
	Scripts    Scripts    `yaml:"scripts"`
	Monitoring Monitoring `yaml:"monitoring"`
	Routing    Routing    `yaml:"routing"`
	Backends   Backends   `yaml:"backends"`
	API        API        `yaml:"api"`
	Metrics    Metrics    `yaml:"metrics"`
	Audit      Audit      `yaml:"audit"`
	Filters    []Filter   `yaml:"filters"`

	Source Source `yaml:"-"`
}

// Source says where a Config's values came from, so that an error can point
// at them. Key paths look like "api.port", "monitoring.interfaces[2]" and
// "filters[1].match_rule.ip_family".
type Source struct {
	Path  string            // the file Load or Parse was given; "" for Default
	Read  bool              // false: the file does not exist and every value is a default
	Lines map[string]int    // key path → 1-based line in Path, for the keys the file set
	Env   map[string]string // key path → the environment variable that overrode it
}

// System holds the daemon-wide settings.
type System struct {
	LogLevel  string `yaml:"log_level"`  // debug, info, warn, error
	LogFormat string `yaml:"log_format"` // text, json
	Backend   string `yaml:"backend"`    // auto, none, systemd-networkd, NetworkManager, dhclient
	// ScriptsDir is the root of the <state>.d script directories.
	ScriptsDir string `yaml:"scripts_dir"`
	// AllowUnsafeNames lets scripts run for interfaces whose names are not
	// made of [A-Za-z0-9._-] (see ValidInterfaceName).
	AllowUnsafeNames bool `yaml:"allow_unsafe_names"`
}

// Scripts holds the limits of the script runner.
type Scripts struct {
	Timeout     time.Duration `yaml:"timeout"`      // per script; then its process group gets SIGTERM
	KillGrace   time.Duration `yaml:"kill_grace"`   // SIGTERM → SIGKILL
	MaxParallel int           `yaml:"max_parallel"` // links whose scripts may run at once
}

// Monitoring selects the interfaces netevd acts on (see Monitored).
type Monitoring struct {
	Interfaces []string `yaml:"interfaces"` // path.Match globs; empty means every interface
	Ignore     []string `yaml:"ignore"`     // path.Match globs; wins over Interfaces
}

// Routing configures policy routing for multi-homed hosts (package
// internal/action/routing).
type Routing struct {
	// PolicyRules are the interfaces (path.Match globs) that get their own
	// table, table_base + ifindex, with "from/to <address>" rules.
	PolicyRules []string `yaml:"policy_rules"`
	// TableBase plus the ifindex is an interface's table. Interfaces whose
	// table would be 0 or 253-255 (default, main, local) are refused.
	TableBase int `yaml:"table_base"`
	// RulePriority is the range of rule priorities netevd owns: it adds
	// its rules there and removes any other rule it finds there.
	RulePriority RulePriority `yaml:"rule_priority"`
	// KeepOnExit leaves the rules and routes in place when netevd stops.
	KeepOnExit bool `yaml:"keep_on_exit"`
	// Routes are declarative routes: one naming interfaces is installed
	// while they are all routable, a global one (naming none) while
	// netevd runs.
	Routes []Route `yaml:"routes"`
}

// Route is one entry of routing.routes, as written ("ip route" words).
type Route struct {
	// Interface is the output interface and the one whose routable state
	// the route follows; "" is a global route.
	Interface string `yaml:"interface"`
	// Destination is a prefix ("192.0.2.0/24", "2001:db8::/32", an address
	// for a host route) or "default" (the family then comes from gateway,
	// nexthops or src).
	Destination string `yaml:"destination" netevd:"required"`
	// Gateway is the single next hop; NextHops (two or more) make a
	// multipath route instead.
	Gateway  string    `yaml:"gateway"`
	NextHops []NextHop `yaml:"nexthops"`
	// Type is unicast (""), blackhole, unreachable or prohibit.
	Type   string `yaml:"type"`
	Metric int64  `yaml:"metric"`
	// Src is the preferred source address, of the destination's family.
	Src string `yaml:"src"`
	// Pref is the IPv6 route preference: high, medium or low.
	Pref string `yaml:"pref"`
	// Table is the routing table; 0 means main (254).
	Table int64 `yaml:"table"`
}

// NextHop is one next hop of a multipath route.
type NextHop struct {
	Gateway   string `yaml:"gateway" netevd:"required"`
	Interface string `yaml:"interface"` // "" lets the kernel pick it from the gateway
	Weight    int    `yaml:"weight"`    // 1-256; 0 means 1
}

// Route types and IPv6 preferences routing.routes accepts.
var (
	RouteTypes = []string{"unicast", "blackhole", "unreachable", "prohibit"}
	RoutePrefs = []string{"high", "medium", "low"}
)

// RulePriority is an inclusive range of policy rule priorities. "from"
// rules use Min, "to" rules Min+1.
type RulePriority struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

// Limits of the routing keys.
const (
	// MaxTableBase keeps table_base + the largest ifindex (2^31-1) within
	// a uint32 table number.
	MaxTableBase = 1 << 31
	// MaxRulePriority is the last priority before the main table's rule
	// (32766).
	MaxRulePriority = 32765
	// MaxUint32 bounds routing.routes' metric and table.
	MaxUint32 = 1<<32 - 1
)

// Backends holds per-backend settings.
type Backends struct {
	SystemdNetworkd SystemdNetworkd `yaml:"systemd_networkd"`
	Dhclient        Dhclient        `yaml:"dhclient"`
	NetworkManager  NetworkManager  `yaml:"networkmanager"`
}

// SystemdNetworkd configures the systemd-networkd backend.
type SystemdNetworkd struct {
	EmitJSON bool `yaml:"emit_json"` // pass the link description to scripts in $JSON
}

// Dhclient configures the dhclient backend. As upstream, the use_* flags
// also apply to what systemd-networkd reports.
type Dhclient struct {
	UseDNS      bool   `yaml:"use_dns"`      // push the lease's DNS servers to systemd-resolved
	UseDomain   bool   `yaml:"use_domain"`   // push the lease's domain to systemd-resolved
	UseHostname bool   `yaml:"use_hostname"` // push the lease's hostname to systemd-hostnamed
	LeaseFile   string `yaml:"lease_file"`   // the lease file dhclient writes
	// LeaseDirs are watched for dhclient's lease files (dhclient.leases,
	// dhclient.<if>.leases, dhclient6.leases, ...; never a DHCP server's
	// dhcpd.leases); a missing directory is waited for.
	LeaseDirs []string `yaml:"lease_dirs"`
	// HostnameMethod is how use_hostname sets the hostname through
	// systemd-hostnamed: "static" (SetStaticHostname, persists) or
	// "transient" (SetHostname, until reboot).
	HostnameMethod string `yaml:"hostname_method"`
}

// Hostname methods for backends.dhclient.hostname_method.
const (
	HostnameStatic    = "static"
	HostnameTransient = "transient"
)

// NetworkManager configures the NetworkManager backend. It has no settings
// yet; the key exists because upstream configs carry `networkmanager: {}`.
type NetworkManager struct{}

// API configures the control API.
type API struct {
	Enabled     bool   `yaml:"enabled"`
	BindAddress string `yaml:"bind_address"` // TCP listener address (an IP)
	Port        int    `yaml:"port"`         // TCP listener port
	Socket      string `yaml:"socket"`       // Unix socket path; "" for none
	TLS         TLS    `yaml:"tls"`
}

// TLS configures TLS on the TCP API listener.
type TLS struct {
	Enabled  bool   `yaml:"enabled"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Enabled bool `yaml:"enabled"`
	Port    int  `yaml:"port"`
}

// Audit configures the JSON Lines audit log.
type Audit struct {
	Enabled       bool   `yaml:"enabled"`
	Path          string `yaml:"path"`
	RetentionDays int    `yaml:"retention_days"` // 0 keeps everything
}

// Filter decides, per event, whether scripts run. Filters are evaluated in
// order; see the Action* constants.
type Filter struct {
	MatchRule MatchRule `yaml:"match_rule" netevd:"required"`
	Action    string    `yaml:"action" netevd:"required"`
	Scripts   []string  `yaml:"scripts"` // accepted for upstream compatibility
}

// MatchRule holds the conditions of a Filter; all the set ones must hold,
// and an empty MatchRule matches everything.
type MatchRule struct {
	Interface        string `yaml:"interface,omitempty"`         // exact name
	InterfacePattern string `yaml:"interface_pattern,omitempty"` // path.Match glob
	EventType        string `yaml:"event_type,omitempty"`        // state string, e.g. "routable"
	IPFamily         string `yaml:"ip_family,omitempty"`         // ipv4, ipv6, any
	Backend          string `yaml:"backend,omitempty"`           // a backend name
	Condition        string `yaml:"condition,omitempty"`         // upstream's condition language
}

// Default returns the configuration used for every key the file does not
// set. Every call returns fresh slices.
func Default() Config {
	return Config{
		System: System{
			LogLevel:   LogInfo,
			LogFormat:  FormatText,
			Backend:    BackendAuto,
			ScriptsDir: "/etc/netevd",
		},
		Scripts: Scripts{
			Timeout:     30 * time.Second,
			KillGrace:   5 * time.Second,
			MaxParallel: 16,
		},
		Monitoring: Monitoring{Interfaces: []string{}, Ignore: []string{}},
		Routing: Routing{
			PolicyRules:  []string{},
			TableBase:    200,
			RulePriority: RulePriority{Min: 10000, Max: 10999},
			Routes:       []Route{},
		},
		Backends: Backends{
			SystemdNetworkd: SystemdNetworkd{EmitJSON: true},
			Dhclient: Dhclient{
				LeaseFile:      "/var/lib/dhcp/dhclient.leases",
				LeaseDirs:      []string{"/var/lib/dhcp", "/var/lib/dhclient"},
				HostnameMethod: HostnameStatic,
			},
		},
		API: API{
			Enabled:     true,
			BindAddress: "127.0.0.1",
			Port:        9090,
			Socket:      "/run/netevd/netevd.sock",
		},
		Metrics: Metrics{Enabled: true, Port: 9091},
		Audit: Audit{
			Path:          "/var/log/netevd/audit.log",
			RetentionDays: 90,
		},
		Filters: []Filter{},
	}
}
