package ctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ledgerd/ledger/internal/version"
)

const rootLong = `ledgerctl: a client of ledgerd.

Every command takes the global flags (before the command or after it) and
-o table|json|yaml. "ledgerctl COMMAND --help" or "ledgerctl help COMMAND"
shows a command's flags and an example.

Exit codes: 0 every item CREATED or EXISTS; 1 an item was refused or a call
failed; 2 a usage error (nothing was sent).`

// newRoot builds the command tree. Each command closes over c, which the
// global flags fill.
func (c *client) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "ledgerctl",
		Short: "A client of ledgerd",
		// The root takes what no command matched, to say so with a
		// suggestion (cobra's own message names no words after the first).
		Args:          cobra.ArbitraryArgs,
		RunE:          unknownCommand,
		SilenceErrors: true, // Run prints errors: a usage error exits 2, others 1
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.applyEnv(cmd); err != nil {
				return err
			}
			return requiredFlags(cmd)
		},
	}
	c.register(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.SetVersionTemplate("{{.Version}}\n")

	groups := []*cobra.Command{
		alias(group("asset", "Define and list assets", c.assetDefineCmd(), c.assetListCmd()), "assets"),
		alias(group("account", "Open, bound, close, freeze and list accounts", c.accountOpenCmd(), c.accountBoundsCmd(),
			c.accountCloseCmd(), c.accountListCmd(), c.accountFreezeCmd(true), c.accountFreezeCmd(false)), "accounts"),
		c.transferCmd(), c.postCmd(), c.voidCmd(), c.reverseCmd(),
		c.balanceCmd(), c.statementCmd(),
		group("transfers", "Look up and list transfers", c.transfersGetCmd(), c.transfersListCmd()),
		c.trialBalanceCmd(),
		group("period", "Accounting periods: close, list", c.periodCloseCmd(), c.periodListCmd()),
		group("categories", "Categories (the chart of accounts): define, list, roll balances up",
			c.categoriesDefineCmd(), c.categoriesListCmd(), c.categoriesBalancesCmd()),
		group("projections", "Read models: status and rebuild", c.projectionsStatusCmd(), c.projectionsRebuildCmd()),
		group("audit", "Verify the log and replay it, on this machine", c.auditVerifyCmd(), c.auditReplayCmd()),
		group("log", "Export and import a ledger's log", c.logExportCmd(), c.logImportCmd()),
		group("anchors", "Signed anchors of the log: list them, make a key pair", c.anchorsListCmd(), c.anchorsKeygenCmd()),
		group("reconcile", "Reconcile accounts with external statements", c.reconcileImportCmd(), c.reconcileRulesCmd(),
			c.reconcileMatchCmd(), c.reconcileUnmatchCmd(), c.reconcileReportCmd()),
		c.journalCmd(),
		group("rules", "Monitoring rules: define, list, dry-run", c.rulesDefineCmd(), c.rulesListCmd(), c.rulesDryRunCmd()),
		group("alerts", "Alerts of monitoring rules", c.alertsListCmd()),
		group("webhooks", "Webhook subscriptions: create, list, delete, deliveries, replay", c.webhooksCreateCmd(),
			c.webhooksListCmd(), c.webhooksDeleteCmd(), c.webhooksDeliveriesCmd(), c.webhooksReplayCmd()),
		group("keys", "API keys (admin)", c.keysCreateCmd(), c.keysListCmd(), c.keysRevokeCmd()),
		group("ledger", "Ledgers (admin): create, archive, status, list", c.ledgerCreateCmd(), c.ledgerArchiveCmd(),
			c.ledgerUnarchiveCmd(), c.ledgerStatusCmd(), c.ledgerListCmd()),
		c.nodesCmd(), c.ledgersCmd(),
		group("admin", "Operations (admin): repair a ledger's stream", c.adminRepairStreamCmd()),
		c.versionCmd(),
	}
	root.AddCommand(groups...)
	root.Long = rootLong + "\n\nCommands:\n" + overview(groups)
	lenient(root)
	return root
}

// lenient lets root and groups pass over flags they do not know, so that
// "ledgerctl tranfer --id t1" says the command is unknown (with a
// suggestion) rather than that --id is; and suggests commands within 2
// edits (cobra's default, which SuggestionsFor applies only on its own
// error path).
func lenient(cmd *cobra.Command) {
	cmd.FParseErrWhitelist.UnknownFlags = true
	cmd.SuggestionsMinimumDistance = 2
	for _, sub := range cmd.Commands() {
		if sub.HasSubCommands() {
			lenient(sub)
		}
	}
}

// group is a command that only holds others; run alone, or with a word
// that is none of them, it is a usage error that suggests one.
func group(name, short string, children ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: name, Short: short, Args: cobra.ArbitraryArgs, RunE: unknownCommand}
	g.AddCommand(children...)
	return g
}

// alias lets cmd be called by names too ("accounts list" as "account list").
func alias(cmd *cobra.Command, names ...string) *cobra.Command {
	cmd.Aliases = append(cmd.Aliases, names...)
	return cmd
}

// unknownCommand refuses words that name no command, suggesting the nearest
// commands cobra finds (a typo, or a prefix).
func unknownCommand(cmd *cobra.Command, args []string) error {
	if !cmd.HasParent() && len(args) == 0 {
		return usageError{"no command given"}
	}
	words := strings.TrimSpace(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()) + " " + strings.Join(args, " "))
	msg := fmt.Sprintf("unknown command %q", words)
	if len(args) > 0 {
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			prefix := strings.TrimSpace(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()))
			for i := range s {
				s[i] = strings.TrimSpace(prefix + " " + s[i])
			}
			msg += fmt.Sprintf("; did you mean %s?", strings.Join(quoted(s), " or "))
		}
	} else {
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		msg += fmt.Sprintf(": %s is followed by one of %s", cmd.Name(), strings.Join(names, ", "))
	}
	return usageError{msg}
}

func quoted(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// required marks flags a command cannot do without: the completion offers
// them first, and requiredFlags names every one missing.
func required(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(fmt.Sprintf("ledgerctl: %s: required flag %s is not defined", cmd.Name(), n)) // a bug of this file
		}
	}
}

// requiredFlags refuses a command whose required flags are not all given,
// naming each: before cobra's own check, whose message names them without
// their dashes.
//
// Errors: usageError.
func requiredFlags(cmd *cobra.Command) error {
	var missing []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if v := f.Annotations[cobra.BashCompOneRequiredFlag]; len(v) > 0 && v[0] == "true" && !f.Changed {
			missing = append(missing, "--"+f.Name)
		}
	})
	if len(missing) == 0 {
		return nil
	}
	return usageError{fmt.Sprintf("%s needs %s", strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" "),
		strings.Join(missing, " and "))}
}

// overviewSelf annotates a command with verbs of its own that does
// something alone too ("ledgerctl nodes" lists them): its overview line.
const overviewSelf = "overview"

// overview lists every command that does something, with its arguments,
// for the root's help: the whole tool on one screen, in the order of
// cmds (cobra sorts its own listing by name).
func overview(cmds []*cobra.Command) string {
	var lines [][2]string
	var walk func([]*cobra.Command)
	walk = func(cmds []*cobra.Command) {
		for _, sub := range cmds {
			if sub.HasAvailableSubCommands() {
				if short, ok := sub.Annotations[overviewSelf]; ok {
					lines = append(lines, [2]string{sub.CommandPath(), short})
				}
				walk(sub.Commands())
				continue
			}
			use := sub.CommandPath()
			if _, args, ok := strings.Cut(sub.Use, " "); ok {
				use += " " + args
			}
			lines = append(lines, [2]string{use, sub.Short})
		}
	}
	walk(cmds)
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	width = min(width, 48)
	var b strings.Builder
	for _, l := range lines {
		if len(l[0]) > width {
			fmt.Fprintf(&b, "  %s\n  %-*s  %s\n", l[0], width, "", l[1])
			continue
		}
		fmt.Fprintf(&b, "  %-*s  %s\n", width, l[0], l[1])
	}
	return strings.TrimRight(b.String(), "\n")
}

// versionCmd prints the build's version, commit and Go version.
func (c *client) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print ledgerctl's version, commit and Go version",
		Example: "  ledgerctl version\n  ledgerctl version -o json",
		Args:    noArgs("version"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			if !c.human() {
				return c.printAny(info)
			}
			_, err := fmt.Fprintln(c.out, "ledgerctl", info)
			return err
		},
	}
}

// noArgs refuses positional arguments, as a usage error naming the command.
func noArgs(name string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 0 {
			return usageError{name + " takes only flags"}
		}
		return nil
	}
}
