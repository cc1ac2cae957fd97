package config

import "path"

// Monitored reports whether netevd acts on the interface called name: it
// matches no monitoring.ignore glob, and monitoring.interfaces is empty or
// one of its globs matches. Globs use path.Match syntax ("eth*",
// "wl?0", "en[a-z]*"); a malformed one (which Validate reports) matches
// nothing.
func (c *Config) Monitored(name string) bool {
	for _, p := range c.Monitoring.Ignore {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	if len(c.Monitoring.Interfaces) == 0 {
		return true
	}
	for _, p := range c.Monitoring.Interfaces {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// ValidInterfaceName reports whether name is a safe Linux interface name:
// 1 to 15 bytes of A-Z a-z 0-9 . _ -, and not "." or "..". The kernel allows
// more (anything but '/', ':', whitespace and NUL); scripts are run for
// names outside this set only with system.allow_unsafe_names.
func ValidInterfaceName(name string) bool {
	if len(name) == 0 || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}
