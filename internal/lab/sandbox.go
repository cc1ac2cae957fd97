package lab

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/netevd/netevd/examples"
)

// configTemplate is the daemon's config. The API is off so the daemon does
// not create its Unix socket in the host's /run, which ip netns exec shares.
const configTemplate = `# Written by netevd lab for a throw-away network namespace.
system:
  scripts_dir: %q
  log_format: text
  log_level: info
  backend: %s
api:
  enabled: false
`

// writeSandbox creates the lab's temporary directory (0700) with the config
// and the example scripts (directories and scripts 0755, owned by the
// caller, root), and returns the config's path.
func (l *lab) writeSandbox() (string, error) {
	dir, err := os.MkdirTemp("", "netevd-lab-")
	if err != nil {
		return "", fmt.Errorf("create lab directory: %w", err)
	}
	l.dir = dir
	config, err := writeFiles(dir, l.opts.Backend)
	if err != nil {
		return "", err
	}
	l.say("+ wrote %s and the example scripts in %s", config, filepath.Join(dir, "scripts"))
	return config, nil
}

// writeFiles writes netevd.yaml and scripts/ into dir for the lab backend
// (BackendNone or BackendNetworkd).
func writeFiles(dir, backend string) (string, error) {
	scripts := filepath.Join(dir, "scripts")
	err := fs.WalkDir(examples.Scripts, "scripts", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			if err := os.Mkdir(dst, 0o755); err != nil {
				return err
			}
			return os.Chmod(dst, 0o755) // exact, whatever the umask
		}
		data, err := fs.ReadFile(examples.Scripts, p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return err
		}
		return os.Chmod(dst, 0o755)
	})
	if err != nil {
		return "", fmt.Errorf("copy example scripts: %w", err)
	}
	daemonBackend := "none"
	if backend == BackendNetworkd {
		daemonBackend = "systemd-networkd"
		if err := writeNetworkdScripts(scripts); err != nil {
			return "", err
		}
	}
	config := filepath.Join(dir, "netevd.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, configTemplate, scripts, daemonBackend), 0o644); err != nil {
		return "", fmt.Errorf("write lab config: %w", err)
	}
	return config, nil
}
