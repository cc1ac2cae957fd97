package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func problemStrings(err error) []string {
	var out []string
	for _, p := range Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

func writeFile(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "netevd.yaml")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if diff := cmp.Diff(c, Default()); diff != "" {
		t.Errorf("Validate changed the defaults (-got +want):\n%s", diff)
	}
	// Every call returns fresh slices.
	a, b := Default(), Default()
	a.Monitoring.Interfaces = append(a.Monitoring.Interfaces, "eth0")
	a.Filters = append(a.Filters, Filter{Action: ActionLog})
	if len(b.Monitoring.Interfaces) != 0 || len(b.Filters) != 0 {
		t.Errorf("Default() shares slices between calls")
	}
}

func TestLoadMissingFileGivesDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent", "netevd.yaml")
	for name, load := range map[string]func(string) (*Config, error){
		"Load":    Load,
		"Resolve": func(p string) (*Config, error) { return Resolve(p, func(string) string { return "" }) },
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load(p)
			if err != nil {
				t.Fatalf("%s(missing) = %v", name, err)
			}
			if c.Source.Read || c.Source.Path != p {
				t.Errorf("Source = %+v, want Path %q and Read false", c.Source, p)
			}
			want := Default()
			want.Source = c.Source
			if diff := cmp.Diff(*c, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestLoadRefusesWhatIsNotAReadableFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"directory", dir, dir + ": not a regular file"},
		{"too large", big, big + ": larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.path)
			if c != nil || err == nil {
				t.Fatalf("Load = %v, %v; want nil and an error", c, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestParseErrors checks the exact messages: every problem is reported,
// each with file:line, and unknown keys name their section.
func TestParseErrors(t *testing.T) {
	const f = "/etc/netevd/netevd.yaml"
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{{
		name: "unknown key in section",
		in:   "system:\n  log_level: info\n\n  fooo: 1\n",
		want: []string{f + `:4: unknown key "fooo" in system; known keys: log_level, log_format, backend, scripts_dir, allow_unsafe_names`},
	}, {
		name: "unknown top-level key",
		in:   "# c\nsytem: {}\n",
		want: []string{f + `:2: unknown key "sytem" in the top level; did you mean "system"?`},
	}, {
		name: "unknown key in a flow mapping is found by name",
		in:   "api: {port: 1, tsl: {}, enabled: true}\n",
		want: []string{f + `:1: unknown key "tsl" in api; did you mean "tls"?`},
	}, {
		name: "unknown key in a list item",
		in:   "filters:\n  - match_rule: {}\n    action: log\n  - match_rule: {ifname: x}\n    action: log\n",
		want: []string{f + `:4: unknown key "ifname" in filters[1].match_rule; known keys: interface, interface_pattern, event_type, ip_family, backend, condition`},
	}, {
		name: "several problems are all listed in line order",
		in:   "system:\n  log_level: [a]\n  backnd: nm\nscripts:\n  timeout: 5\n  max_parallel: x\n",
		want: []string{
			f + `:2: system.log_level: want a string, got a list`,
			f + `:3: unknown key "backnd" in system; did you mean "backend"?`,
			f + `:5: scripts.timeout: want a duration with a unit, such as 30s or 500ms, got integer "5"`,
			f + `:6: scripts.max_parallel: want an integer, got string "x"`,
		},
	}, {
		name: "type errors in a flow mapping name the right key",
		in:   "metrics: {enabled: 1.5, port: abc}\n",
		want: []string{
			f + `:1: metrics.enabled: want true or false, got number "1.5"`,
			f + `:1: metrics.port: want an integer, got string "abc"`,
		},
	}, {
		name: "section of the wrong kind",
		in:   "api: true\n",
		want: []string{f + `:1: api: want a mapping, got boolean "true"`},
	}, {
		name: "syntax error",
		in:   "system:\n\tlog_level: info\n",
		want: []string{f + `:2: YAML syntax: found character that cannot start any token`},
	}, {
		name: "second document",
		in:   "system: {}\n...\n---\napi: {}\n",
		want: []string{f + `:3: a second YAML document; the config is one document`},
	}, {
		name: "duplicate key",
		in:   "system:\n  backend: nm\n  backend: none\n",
		want: []string{f + `:3: system.backend: duplicate key (first set at line 2)`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), f)
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			if diff := cmp.Diff(problemStrings(err), tc.want); diff != "" {
				t.Errorf("problems (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseEmptyGivesDefaults(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only\n# comments\n", "---\n", "~\n", "system:\n"} {
		c, err := Parse([]byte(in), "x.yaml")
		if err != nil {
			t.Fatalf("Parse(%q) = %v", in, err)
		}
		want := Default()
		want.Source = c.Source
		if diff := cmp.Diff(*c, want); diff != "" {
			t.Errorf("Parse(%q) (-got +want):\n%s", in, diff)
		}
		if !c.Source.Read {
			t.Errorf("Parse(%q): Source.Read = false", in)
		}
	}
}

func TestParseKeepsDefaultsOfUnsetKeys(t *testing.T) {
	c, err := Parse([]byte("api:\n  port: 8080\nscripts: {timeout: 2s}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.API.Port = 8080
	want.Scripts.Timeout = 2 * time.Second
	want.Source = c.Source
	if diff := cmp.Diff(*c, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestSourceLines(t *testing.T) {
	in := "# header\nsystem:\n  backend: nm\nmonitoring:\n  interfaces:\n    - eth0\n    - wl*\nfilters:\n  - match_rule: {ip_family: ipv4}\n    action: log\n"
	c, err := Parse([]byte(in), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"system":                          2,
		"system.backend":                  3,
		"monitoring":                      4,
		"monitoring.interfaces":           5,
		"monitoring.interfaces[0]":        6,
		"monitoring.interfaces[1]":        7,
		"filters":                         8,
		"filters[0]":                      9,
		"filters[0].match_rule":           9,
		"filters[0].match_rule.ip_family": 9,
		"filters[0].action":               10,
	}
	if diff := cmp.Diff(c.Source.Lines, want); diff != "" {
		t.Errorf("Lines (-got +want):\n%s", diff)
	}
}

func TestValidateReportsLines(t *testing.T) {
	in := "system:\n  log_level: loud\napi:\n  tls:\n    enabled: true\n    key_file: /k\nrouting:\n  policy_rules: [eth0, \"a b\"]\n"
	c, err := Parse([]byte(in), "n.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`n.yaml:2: system.log_level: unknown log level "loud" (want debug, info, warn or error)`,
		`n.yaml:5: api.tls.cert_file: required when api.tls.enabled is true`,
		`n.yaml:8: routing.policy_rules[1]: "a b" is not an interface name (1-15 of A-Z a-z 0-9 . _ -)`,
	}
	if diff := cmp.Diff(problemStrings(c.Validate()), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	var e *Error
	if err := c.Validate(); !errors.As(err, &e) || e.Key != "system.log_level" || e.Line != 2 || e.File != "n.yaml" {
		t.Errorf("first problem = %+v, want Key system.log_level at n.yaml:2", e)
	}
}

func TestValidateWithoutSource(t *testing.T) {
	c := Default()
	c.API.Port = 0
	c.Filters = []Filter{{Action: "jump"}}
	want := []string{
		"api.port: must be a port between 1 and 65535, got 0",
		`filters[0].action: unknown action "jump" (want execute, ignore or log)`,
	}
	if diff := cmp.Diff(problemStrings(c.Validate()), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestCanonicalNames(t *testing.T) {
	for _, tc := range []struct {
		in, level, backend string
	}{
		{"info", "info", ""},
		{" Warning ", "warn", ""},
		{"TRACE", "debug", ""},
		{"ERROR", "error", ""},
		{"auto", "", "auto"},
		{"None", "", "none"},
		{"networkd", "", "systemd-networkd"},
		{"Systemd_Networkd", "", "systemd-networkd"},
		{"networkmanager", "", "NetworkManager"},
		{"NM", "", "NetworkManager"},
		{"DHClient", "", "dhclient"},
		{"", "", ""},
		{"wicked", "", ""},
	} {
		lv, err := CanonicalLogLevel(tc.in)
		if (err == nil) != (tc.level != "") || lv != tc.level {
			t.Errorf("CanonicalLogLevel(%q) = %q, %v; want %q", tc.in, lv, err, tc.level)
		}
		b, err := CanonicalBackend(tc.in)
		if (err == nil) != (tc.backend != "") || b != tc.backend {
			t.Errorf("CanonicalBackend(%q) = %q, %v; want %q", tc.in, b, err, tc.backend)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	for in, want := range map[string]string{"trace": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "bogus": "INFO"} {
		if got := SlogLevel(in).String(); got != want {
			t.Errorf("SlogLevel(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestMonitored(t *testing.T) {
	for _, tc := range []struct {
		name       string
		interfaces []string
		ignore     []string
		yes, no    []string
	}{
		{name: "empty means all", yes: []string{"eth0", "lo", "wlan0", "a:b"}},
		{name: "ignore only", ignore: []string{"lo", "docker*", "veth?"}, yes: []string{"eth0", "veth10", "lo0"}, no: []string{"lo", "docker0", "docker", "veth1"}},
		{name: "interfaces only", interfaces: []string{"eth*", "wl[a-z]*"}, yes: []string{"eth0", "eth", "wlan0"}, no: []string{"wl0", "en0", "lo"}},
		{name: "ignore wins", interfaces: []string{"eth*"}, ignore: []string{"eth9"}, yes: []string{"eth0", "eth99"}, no: []string{"eth9", "en0"}},
		{name: "exact names", interfaces: []string{"eth0"}, yes: []string{"eth0"}, no: []string{"eth00", "eth"}},
		{name: "malformed glob matches nothing", interfaces: []string{"eth["}, no: []string{"eth[", "eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Monitoring.Interfaces, c.Monitoring.Ignore = tc.interfaces, tc.ignore
			for _, n := range tc.yes {
				if !c.Monitored(n) {
					t.Errorf("Monitored(%q) = false, want true", n)
				}
			}
			for _, n := range tc.no {
				if c.Monitored(n) {
					t.Errorf("Monitored(%q) = true, want false", n)
				}
			}
		})
	}
}

func TestValidInterfaceName(t *testing.T) {
	for name, want := range map[string]bool{
		"eth0": true, "enp0s31f6": true, "br-lan": true, "wg_0.1": true, "abcdefghijklmno": true,
		"": false, ".": false, "..": false, "abcdefghijklmnop": false, "eth0:1": false, "veth@if2": false,
		"a b": false, "a/b": false, "x;rm": false, "é": false, "$(id)": false, "a\n": false,
	} {
		if got := ValidInterfaceName(name); got != want {
			t.Errorf("ValidInterfaceName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	full := map[string]string{
		"NETEVD_LOG_LEVEL":        "DEBUG",
		"NETEVD_BACKEND":          "nm",
		"NETEVD_API_ENABLED":      "false",
		"NETEVD_API_BIND_ADDRESS": "::1",
		"NETEVD_API_PORT":         "8081",
		"NETEVD_METRICS_ENABLED":  "off",
		"NETEVD_AUDIT_ENABLED":    "Yes",
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     func(*Config)
		wantEnv  map[string]string
		wantErrs []string // from ApplyEnv, then Validate
	}{{
		name: "nothing set changes nothing",
		env:  map[string]string{},
		want: func(*Config) {},
	}, {
		name: "empty counts as unset",
		env:  map[string]string{"NETEVD_API_PORT": "", "NETEVD_AUDIT_ENABLED": ""},
		want: func(*Config) {},
	}, {
		name: "every variable",
		env:  full,
		want: func(c *Config) {
			c.System.LogLevel = "DEBUG" // Validate canonicalizes
			c.System.Backend = "nm"
			c.API.Enabled = false
			c.API.BindAddress = "::1"
			c.API.Port = 8081
			c.Metrics.Enabled = false
			c.Audit.Enabled = true
		},
		wantEnv: map[string]string{
			"system.log_level": "NETEVD_LOG_LEVEL", "system.backend": "NETEVD_BACKEND",
			"api.enabled": "NETEVD_API_ENABLED", "api.bind_address": "NETEVD_API_BIND_ADDRESS",
			"api.port": "NETEVD_API_PORT", "metrics.enabled": "NETEVD_METRICS_ENABLED",
			"audit.enabled": "NETEVD_AUDIT_ENABLED",
		},
	}, {
		name: "bad values are errors naming the variable and change nothing",
		env: map[string]string{
			"NETEVD_API_ENABLED":     "enabled",
			"NETEVD_API_PORT":        "80a",
			"NETEVD_METRICS_ENABLED": "2",
			"NETEVD_AUDIT_ENABLED":   "t",
		},
		want: func(*Config) {},
		wantErrs: []string{
			`env NETEVD_API_ENABLED: api.enabled: want true or false, got "enabled"`,
			`env NETEVD_API_PORT: api.port: want an integer, got "80a"`,
			`env NETEVD_METRICS_ENABLED: metrics.enabled: want true or false, got "2"`,
			`env NETEVD_AUDIT_ENABLED: audit.enabled: want true or false, got "t"`,
		},
	}, {
		name: "values that parse but are invalid are reported by Validate against the variable",
		env:  map[string]string{"NETEVD_API_PORT": "70000", "NETEVD_BACKEND": "wicked", "NETEVD_API_BIND_ADDRESS": "any"},
		want: func(c *Config) {
			c.API.Port = 70000
			c.System.Backend = "wicked"
			c.API.BindAddress = "any"
		},
		wantEnv: map[string]string{"api.port": "NETEVD_API_PORT", "system.backend": "NETEVD_BACKEND", "api.bind_address": "NETEVD_API_BIND_ADDRESS"},
		wantErrs: []string{
			`env NETEVD_BACKEND: system.backend: unknown backend "wicked" (want auto, none, systemd-networkd, NetworkManager or dhclient)`,
			`env NETEVD_API_BIND_ADDRESS: api.bind_address: "any" is not an IP address`,
			`env NETEVD_API_PORT: api.port: must be a port between 1 and 65535, got 70000`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := c.ApplyEnv(func(k string) string { return tc.env[k] })
			want := Default()
			tc.want(&want)
			want.Source = c.Source
			if diff := cmp.Diff(c, want); diff != "" {
				t.Errorf("config (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(c.Source.Env, tc.wantEnv, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Source.Env (-got +want):\n%s", diff)
			}
			got := append(problemStrings(err), problemStrings(c.Validate())...)
			if diff := cmp.Diff(got, tc.wantErrs); diff != "" {
				t.Errorf("problems (-got +want):\n%s", diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	p := writeFile(t, "system:\n  log_level: loud\n  bogus: 1\napi:\n  port: 99999\n")
	env := map[string]string{"NETEVD_METRICS_ENABLED": "perhaps", "NETEVD_API_PORT": "8080"}
	c, err := Resolve(p, func(k string) string { return env[k] })
	if c != nil {
		t.Errorf("Resolve returned a config with its error")
	}
	// The env fixed api.port; every other problem of all three steps is
	// listed: the file's in line order, then the environment's.
	want := []string{
		p + `:2: system.log_level: unknown log level "loud" (want debug, info, warn or error)`,
		p + `:3: unknown key "bogus" in system; known keys: log_level, log_format, backend, scripts_dir, allow_unsafe_names`,
		`env NETEVD_METRICS_ENABLED: metrics.enabled: want true or false, got "perhaps"`,
	}
	if diff := cmp.Diff(problemStrings(err), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}

	p = writeFile(t, "system: {backend: NM}\n")
	c, err = Resolve(p, func(k string) string { return map[string]string{"NETEVD_LOG_LEVEL": "Warning"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.System.Backend != BackendNetworkManager || c.System.LogLevel != LogWarn {
		t.Errorf("Resolve did not canonicalize: backend %q, log level %q", c.System.Backend, c.System.LogLevel)
	}
	if c.Source.Env["system.log_level"] != "NETEVD_LOG_LEVEL" || c.Source.Lines["system.backend"] != 1 {
		t.Errorf("Source = %+v", c.Source)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	full, err := Resolve("testdata/effective/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	odd := Default()
	odd.System.ScriptsDir = "/etc/net evd/: #x"
	odd.Monitoring.Interfaces = []string{"*", "- x", "yes", "[ab]", "0x10"}
	odd.Filters = []Filter{{MatchRule: MatchRule{Condition: "interface == \"a\\\"\"", EventType: "null"}, Action: ActionLog, Scripts: []string{"~", "'q'"}}}
	for name, c := range map[string]*Config{"default": new(Default()), "full": full, "odd strings": &odd} {
		t.Run(name, func(t *testing.T) {
			out, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, "marshaled.yaml")
			if err != nil {
				t.Fatalf("Parse(Marshal()) = %v\n%s", err, out)
			}
			if err := back.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if d := Diff(c, back); len(d) != 0 {
				t.Errorf("round trip changed %v\n%s", d, out)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	base := Default()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"equal", func(*Config) {}, nil},
		{"source is ignored", func(c *Config) { c.Source.Path = "/x"; c.Source.Lines = map[string]int{"api": 1} }, nil},
		{"scalars", func(c *Config) { c.API.Port = 1; c.Scripts.Timeout = time.Second }, []string{"api.port", "scripts.timeout"}},
		{"list grows", func(c *Config) { c.Monitoring.Ignore = []string{"lo"} }, []string{"monitoring.ignore", "monitoring.ignore[0]"}},
		{"list item changes", func(c *Config) {
			c.Filters = []Filter{{Action: ActionLog}}
		}, []string{"filters", "filters[0].action", "filters[0].match_rule", "filters[0].scripts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			if diff := cmp.Diff(Diff(&base, &c), tc.want); diff != "" {
				t.Errorf("Diff (-got +want):\n%s", diff)
			}
		})
	}
	a, b := Default(), Default()
	a.Routing.PolicyRules = []string{"eth0", "eth1"}
	b.Routing.PolicyRules = []string{"eth0", "eth2"}
	if diff := cmp.Diff(Diff(&a, &b), []string{"routing.policy_rules[1]"}); diff != "" {
		t.Errorf("Diff (-got +want):\n%s", diff)
	}
}

// TestDistExample: the shipped example config is valid, documents every
// key, and shows the defaults.
func TestDistExample(t *testing.T) {
	const p = "../../dist/netevd.yaml"
	c, err := Resolve(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if d := Diff(c, &def); len(d) != 0 {
		t.Errorf("%s differs from Default() at %v", p, d)
	}
	for key := range flatten(&def) {
		if _, ok := c.Source.Lines[key]; !ok {
			t.Errorf("%s does not show %s", p, key)
		}
	}
}

func TestProblems(t *testing.T) {
	a, b, c := &Error{Msg: "a"}, &Error{Msg: "b"}, errors.New("c")
	for _, tc := range []struct {
		name string
		err  error
		want []error
	}{
		{"nil", nil, nil},
		{"one", a, []error{a}},
		{"joined", errors.Join(a, b), []error{a, b}},
		{"nested", errors.Join(a, errors.Join(b, c)), []error{a, b, c}},
	} {
		got := Problems(tc.err)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Problems = %v, want %v", tc.name, got, tc.want)
		}
	}
}
