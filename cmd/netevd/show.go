package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/netevd/netevd/internal/action/routing"
	"github.com/netevd/netevd/internal/config"
	"github.com/netevd/netevd/internal/event"
	"github.com/netevd/netevd/internal/rtnl"
	"github.com/netevd/netevd/internal/state"
)

func newShowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show what netevd manages",
	}
	cmd.AddCommand(newShowRulesCommand())
	return cmd
}

// ruleRow is one line of `netevd show rules -o json`.
type ruleRow struct {
	Rule     string `json:"rule"` // in `ip rule add` notation
	Priority uint32 `json:"priority"`
	Table    uint32 `json:"table"`
	Owned    bool   `json:"owned"` // in the priority range netevd owns
}

func newShowRulesCommand() *cobra.Command {
	var (
		configPath string
		output     string
		plan       bool
	)
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List the routing policy rules, or with --plan what netevd would install",
		Long: `List the kernel's routing policy rules (IPv4 and IPv6), marking those in the
priority range netevd owns (routing.rule_priority).

With --plan, read the current links, addresses and routes, and print the exact
ip commands netevd would run for routing.policy_rules, changing nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Resolve(configPath, os.Getenv)
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("unknown output format %q (want table or json)", output)
			}
			if plan {
				lines, err := planRules(cmd, cfg)
				if err != nil {
					return err
				}
				return writePlan(cmd.OutOrStdout(), output, lines)
			}
			rows, err := listRules(cmd, cfg)
			if err != nil {
				return err
			}
			return writeRules(cmd.OutOrStdout(), output, rows)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", config.DefaultPath, "config file")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.BoolVar(&plan, "plan", false, "print the ip commands netevd would run, change nothing")
	return cmd
}

// planRules reads the kernel's current state and returns the commands the
// routing action would run for it.
func planRules(cmd *cobra.Command, cfg *config.Config) ([]string, error) {
	d, err := rtnl.Dump(cmd.Context(), rtnl.NetNS{})
	if err != nil {
		return nil, err
	}
	m := state.New(config.BackendNone)
	m.Apply(event.Event{Kind: event.KindSync, Dump: d})
	opts := routingOptions(cfg, true)
	opts.KeepOnExit = true // Close must not touch anything
	a, err := routing.New(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer a.Close(cmd.Context())
	return a.Plan(m.Snapshot()), nil
}

func listRules(cmd *cobra.Command, cfg *config.Config) ([]ruleRow, error) {
	r, err := rtnl.OpenRouter(rtnl.NetNS{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rules, err := r.RuleList(cmd.Context())
	if err != nil {
		return nil, err
	}
	lo, hi := uint32(cfg.Routing.RulePriority.Min), uint32(cfg.Routing.RulePriority.Max)
	rows := make([]ruleRow, 0, len(rules))
	for _, ru := range rules {
		rows = append(rows, ruleRow{Rule: rtnl.FormatRule(ru), Priority: ru.Priority, Table: ru.Table,
			Owned: ru.Priority >= lo && ru.Priority <= hi})
	}
	return rows, nil
}

func writePlan(w io.Writer, output string, lines []string) error {
	if output == "json" {
		if lines == nil {
			lines = []string{}
		}
		return writeJSON(w, map[string][]string{"commands": lines})
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return nil
}

func writeRules(w io.Writer, output string, rows []ruleRow) error {
	if output == "json" {
		return writeJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRIORITY\tOWNED\tRULE")
	for _, r := range rows {
		owned := "no"
		if r.Owned {
			owned = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", r.Priority, owned, r.Rule)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
