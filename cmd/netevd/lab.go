package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/netevd/netevd/internal/lab"
)

func newLabCommand() *cobra.Command {
	var opts lab.Options
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the daemon in a throw-away network namespace sandbox and flap its link",
		Long: `Create two throw-away network namespaces joined by a veth pair, start netevd in one
with example scripts, then bring the link up, add addresses and a default route,
flap the carrier and remove things again, showing the daemon's events and script
output as they happen. With --backend networkd the real systemd-networkd, with a
private system bus, manages the link instead and the daemon follows it. Needs
root. The host's interfaces, routes and rules are never touched, and everything
is removed on exit or Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				opts.Binary = exe
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := lab.Run(ctx, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Keep, "keep", false, "leave the namespaces and files for inspection")
	f.IntVar(&opts.Steps, "flaps", 1, "carrier flap cycles")
	f.BoolVar(&opts.Loop, "loop", false, "flap until interrupted")
	f.DurationVar(&opts.Delay, "delay", lab.DefaultDelay, "pause between steps")
	f.StringVar(&opts.Binary, "binary", "", "netevd binary to run inside (default: this one)")
	f.StringVar(&opts.Backend, "backend", lab.BackendNone,
		"network manager backend: none (kernel events only) or networkd (the real systemd-networkd manages the link)")
	return cmd
}
