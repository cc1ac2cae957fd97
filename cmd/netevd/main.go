// Command netevd is the network event daemon and its command-line tool in
// one binary: with no subcommand it runs the daemon; the subcommands
// validate the config, check scripts, run the sandbox lab and print the
// version. Everything the daemon is made of is wired here, explicitly.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/netevd/netevd/internal/config"
	"github.com/netevd/netevd/internal/version"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func main() {
	err := newRootCommand().ExecuteContext(context.Background())
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ee == nil || ee.err != nil {
		fmt.Fprintln(os.Stderr, "netevd:", err)
	}
	os.Exit(code)
}

func newRootCommand() *cobra.Command {
	var opts daemonOptions
	root := &cobra.Command{
		Use:   "netevd",
		Short: "Linux network event daemon",
		Long: `netevd watches the kernel's links, addresses and routes (and, later, the network
manager) and runs your scripts when the network changes.

With no subcommand it runs the daemon.`,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), opts)
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	f := root.Flags()
	f.StringVarP(&opts.configPath, "config", "c", config.DefaultPath, "config file (a missing file means defaults)")
	f.StringVar(&opts.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides the config)")
	f.StringVar(&opts.logFormat, "log-format", "", "log format: text or json (overrides the config)")
	f.BoolVar(&opts.dryRun, "dry-run", false, "log which scripts would run, with their environment, and change nothing")

	root.AddCommand(
		newValidateCommand(),
		newCheckScriptsCommand(),
		newLabCommand(),
		newShowCommand(),
		newVersionCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String())
		},
	}
}
