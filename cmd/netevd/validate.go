package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/netevd/netevd/internal/config"
)

func newValidateCommand() *cobra.Command {
	var print bool
	cmd := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a config file and list every problem in it",
		Long: `Check a config file (default /etc/netevd/netevd.yaml) together with the NETEVD_*
environment overrides. Every problem is listed with its file and line; the exit
status is 1 if there is any. With --print the effective config is printed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := config.DefaultPath
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Resolve(path, os.Getenv)
			if err != nil {
				problems := config.Problems(err)
				for _, p := range problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d problem(s)\n", path, len(problems))
				return &exitError{code: 1}
			}
			if !cfg.Source.Read {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: no such file; the defaults apply\n", path)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: ok\n", path)
			}
			if print {
				out, err := cfg.Marshal()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&print, "print", false, "print the effective config as YAML")
	return cmd
}
