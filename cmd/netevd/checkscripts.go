package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/netevd/netevd/internal/action/script"
	"github.com/netevd/netevd/internal/config"
)

// dirReport is check-scripts' finding for one script directory.
type dirReport struct {
	Dir     string                `json:"dir"`
	Missing bool                  `json:"missing,omitempty"`
	Error   string                `json:"error,omitempty"`
	Scripts []script.ScriptStatus `json:"scripts"`
}

func newCheckScriptsCommand() *cobra.Command {
	var (
		configPath string
		output     string
	)
	cmd := &cobra.Command{
		Use:   "check-scripts [DIR]",
		Short: "List every script, whether it will run, and why not",
		Long: `List the scripts the daemon would consider, in the order it would run them, and
for each whether it runs and, if not, why (ownership, permissions, backup file, ...).

DIR is the scripts root (default: system.scripts_dir of the config) or one
<event>.d directory. The exit status is 1 if any script is refused.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var root string
			if len(args) == 1 {
				root = args[0]
			} else {
				cfg, err := config.Resolve(configPath, os.Getenv)
				if err != nil {
					return fmt.Errorf("config: %w", err)
				}
				root = cfg.System.ScriptsDir
			}
			reports, err := checkScripts(root)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return err
				}
			case "table", "":
				writeScriptTable(cmd.OutOrStdout(), reports)
			default:
				return fmt.Errorf("unknown output format %q (want table or json)", output)
			}
			for _, r := range reports {
				for _, s := range r.Scripts {
					if !s.Runs && !s.Skipped {
						return &exitError{code: 1}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", config.DefaultPath, "config file that names the scripts root")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// checkScripts checks root as one <event>.d directory, or as the scripts
// root: the standard directories plus any other *.d directory in it.
func checkScripts(root string) ([]dirReport, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", root)
	}
	if strings.HasSuffix(filepath.Base(root), ".d") {
		return []dirReport{checkDir(root)}, nil
	}
	names := append([]string(nil), script.StandardDirs...)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		seen[n] = true
	}
	extra, err := filepath.Glob(filepath.Join(root, "*.d"))
	if err != nil {
		return nil, err
	}
	for _, e := range extra {
		if n := filepath.Base(e); !seen[n] {
			names = append(names, n)
		}
	}
	out := make([]dirReport, 0, len(names))
	for _, n := range names {
		out = append(out, checkDir(filepath.Join(root, n)))
	}
	return out, nil
}

func checkDir(dir string) dirReport {
	r := dirReport{Dir: dir, Scripts: []script.ScriptStatus{}}
	st, err := script.Check(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Missing = true
	case err != nil:
		r.Error = err.Error()
	default:
		r.Scripts = st
	}
	return r
}

func writeScriptTable(w io.Writer, reports []dirReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCRIPT\tRUNS\tREASON")
	for _, r := range reports {
		switch {
		case r.Error != "":
			fmt.Fprintf(tw, "%s\tno\t%s\n", r.Dir, r.Error)
		case len(r.Scripts) == 0:
			continue
		}
		for _, s := range r.Scripts {
			runs := "no"
			switch {
			case s.Runs:
				runs = "yes"
			case s.Skipped:
				runs = "skip"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Path, runs, s.Reason)
		}
	}
	tw.Flush()
}
