package config

import (
	"fmt"
	"strconv"
	"strings"
)

// envOverride is one environment variable that overrides one key.
type envOverride struct {
	name string
	key  string
	set  func(c *Config, v string) error
}

// envOverrides are upstream's variables, in the order ApplyEnv reads them.
var envOverrides = []envOverride{
	{"NETEVD_LOG_LEVEL", "system.log_level", func(c *Config, v string) error { c.System.LogLevel = v; return nil }},
	{"NETEVD_BACKEND", "system.backend", func(c *Config, v string) error { c.System.Backend = v; return nil }},
	{"NETEVD_API_ENABLED", "api.enabled", func(c *Config, v string) error { return setBool(&c.API.Enabled, v) }},
	{"NETEVD_API_BIND_ADDRESS", "api.bind_address", func(c *Config, v string) error { c.API.BindAddress = v; return nil }},
	{"NETEVD_API_PORT", "api.port", func(c *Config, v string) error { return setInt(&c.API.Port, v) }},
	{"NETEVD_METRICS_ENABLED", "metrics.enabled", func(c *Config, v string) error { return setBool(&c.Metrics.Enabled, v) }},
	{"NETEVD_AUDIT_ENABLED", "audit.enabled", func(c *Config, v string) error { return setBool(&c.Audit.Enabled, v) }},
}

// EnvVar is an environment variable ApplyEnv reads and the key it overrides.
type EnvVar struct {
	Name string // e.g. "NETEVD_API_PORT"
	Key  string // e.g. "api.port"
}

// EnvVars lists the variables ApplyEnv reads, in the order it reads them.
func EnvVars() []EnvVar {
	out := make([]EnvVar, len(envOverrides))
	for i, o := range envOverrides {
		out[i] = EnvVar{Name: o.name, Key: o.key}
	}
	return out
}

// ApplyEnv overrides keys from the environment, read through getenv
// (os.Getenv in the daemon): NETEVD_LOG_LEVEL, NETEVD_BACKEND,
// NETEVD_API_ENABLED, NETEVD_API_BIND_ADDRESS, NETEVD_API_PORT,
// NETEVD_METRICS_ENABLED and NETEVD_AUDIT_ENABLED. An empty value counts as
// unset. Booleans take true/false, 1/0, yes/no, on/off in any case; a value
// that does not parse is an error naming the variable and leaves the key as
// it was (upstream silently falls back to a per-variable default). Validate
// afterwards: it reports a bad overridden value against the variable.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	var l errorList
	for _, o := range envOverrides {
		v := getenv(o.name)
		if v == "" {
			continue
		}
		if err := o.set(c, v); err != nil {
			l = append(l, &Error{Env: o.name, Key: o.key, Msg: fmt.Sprintf("%s: %v", o.key, err)})
			continue
		}
		if c.Source.Env == nil {
			c.Source.Env = map[string]string{}
		}
		c.Source.Env[o.key] = o.name
	}
	return l.join()
}

func setBool(dst *bool, v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		*dst = true
	case "false", "0", "no", "off":
		*dst = false
	default:
		return fmt.Errorf("want true or false, got %q", v)
	}
	return nil
}

func setInt(dst *int, v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("want an integer, got %q", v)
	}
	*dst = n
	return nil
}
