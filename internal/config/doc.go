// Package config owns netevd's configuration: the YAML schema of
// /etc/netevd/netevd.yaml, its defaults (in code, see Default), the strict
// decoder, the environment overrides and the validation.
//
// The life of a config is Load (or Parse) → ApplyEnv → Validate; Resolve
// does all three and reports every problem it finds at once, each with the
// file and line (or the environment variable) it came from. Nothing here
// acts on the config: cmd/netevd hands the parts to the components that use
// them. A reload builds and validates a whole new Config before the old one
// is dropped; Diff says which keys changed.
//
// Compatibility with the upstream (Rust) netevd: every key it reads keeps
// its name and meaning. The differences are deliberate:
//   - an unknown key is an error with file:line, not silently ignored
//     (upstream drops typos and its own v0.1 keys without a word);
//   - a file that exists but cannot be read (EACCES) is an error, not
//     "defaults";
//   - system.backend defaults to "auto" (pick what is running) instead of
//     "systemd-networkd", also accepts "none" (kernel only), and compares
//     case-insensitively with the aliases "networkd" and "nm";
//   - system.log_level is validated; "trace" means debug and "warning" warn;
//   - monitoring.interfaces takes globs and is enforced (see Monitored);
//   - NETEVD_*_ENABLED and NETEVD_API_PORT with a value that does not parse
//     are errors naming the variable; upstream silently falls back to a
//     default that differs per variable. An empty variable counts as unset.
//
// This package imports only the standard library and the YAML decoder.
package config
