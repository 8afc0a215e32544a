package ctl

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// rulesFileMax bounds a rules file: 100 rules with their descriptions
// (1 KiB) and metadata fit many times over.
const rulesFileMax = 4 << 20

// readProtoFile reads a YAML or JSON file (- for standard input) into m,
// as protojson reads it (field names as in the proto or camelCase, enums
// by name, unknown fields refused).
//
// Errors: usageError for a file that cannot be read or does not hold m.
func readProtoFile(path string, stdin io.Reader, m proto.Message) error {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return usageError{fmt.Sprintf("-f: %v", err)}
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, rulesFileMax+1))
	if err != nil {
		return usageError{fmt.Sprintf("-f %s: %v", path, err)}
	}
	if len(b) > rulesFileMax {
		return usageError{fmt.Sprintf("-f %s: over %d bytes", path, rulesFileMax)}
	}
	doc, err := yaml.YAMLToJSON(b) // JSON is YAML too
	if err != nil {
		return usageError{fmt.Sprintf("-f %s: %v", path, err)}
	}
	d := bytes.TrimSpace(doc)
	isList := len(d) > 0 && d[0] == '['
	switch m := m.(type) {
	case *ledgerv1.DefineRulesRequest:
		// A list of rules stands for {rules: [...]}.
		if isList {
			doc = append(append([]byte(`{"rules":`), d...), '}')
		}
	case *ledgerv1.Rule:
		// A rules file of one rule serves a dry run too.
		if isList {
			var rules ledgerv1.DefineRulesRequest
			if err := protojson.Unmarshal(append(append([]byte(`{"rules":`), d...), '}'), &rules); err != nil {
				return usageError{fmt.Sprintf("-f %s: %v", path, err)}
			}
			if n := len(rules.GetRules()); n != 1 {
				return usageError{fmt.Sprintf("-f %s: %d rules, a dry run takes one", path, n)}
			}
			proto.Merge(m, rules.GetRules()[0])
			return nil
		}
	}
	if err := protojson.Unmarshal(doc, m); err != nil {
		return usageError{fmt.Sprintf("-f %s: %v", path, err)}
	}
	return nil
}

func (c *client) rulesDefineCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "define -f FILE",
		Short: "Define or change monitoring rules from a YAML or JSON file (writer)",
		Long: "The file holds a list of rules, or {rules: [...]}, as DefineRulesRequest's rules (docs/monitoring.md):\n" +
			"  - id: big-debit\n" +
			"    asset: USD\n" +
			"    account_pattern: 'users:*'\n" +
			"    threshold: {amount: \"1000.00\", side: SIDE_DEBIT}\n" +
			"    actions: [RULE_ACTION_FREEZE]\n" +
			"A change is a new version; the definition in force again answers EXISTS.",
		Example: "  ledgerctl rules define -f rules.yaml",
		Args:    noArgs("rules define"),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "a YAML or JSON file of rules (- for standard input)")
	required(cmd, "file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &ledgerv1.DefineRulesRequest{}
		if err := readProtoFile(file, cmd.InOrStdin(), req); err != nil {
			return err
		}
		req.Ledger = c.ledger
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.mon.DefineRules(ctx, req)
			if err != nil {
				return err
			}
			return c.printResults(resp, resp.GetResults())
		})
	}
	return cmd
}

func (c *client) rulesListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "The rules in force, in id order, with their version",
		Example: "  ledgerctl rules list\n  ledgerctl rules list -o yaml",
		Args:    noArgs("rules list"),
	}
	limit := cmd.Flags().Uint32("limit", 0, "at most this many a page (1..1000; 0: 1000)")
	cursor := cmd.Flags().String("cursor", "", "the page after this cursor (the last page's \"more\")")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.mon.ListRules(ctx, &ledgerv1.ListRulesRequest{Ledger: c.ledger, Limit: *limit, Cursor: *cursor})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "ID\tVERSION\tMODE\tASSET\tACCOUNTS\tKIND\tACTIONS\tDISABLED\tPOSITION\t")
			for _, v := range resp.GetRules() {
				r := v.GetRule()
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%t\t%d\t\n", r.GetId(), v.GetVersion(), modeName(r.GetMode()), r.GetAsset(),
					cmp.Or(r.GetAccountPattern(), "all"), ruleKind(r), actionNames(r.GetActions(), r.GetHoldAccount()), r.GetDisabled(), v.GetPosition())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return c.pageFooter(resp.GetNextCursor(), resp.GetPosition())
		})
	}
	return cmd
}

func modeName(m ledgerv1.RuleMode) string {
	if m == ledgerv1.RuleMode_RULE_MODE_BEFORE_COMMIT {
		return "before_commit"
	}
	return "after_commit"
}

// actionNames names a rule's actions, the hold with the account it holds
// towards: "freeze,hold(suspense:review)".
func actionNames(as []ledgerv1.RuleAction, holdAccount string) string {
	var out []string
	for _, a := range as {
		name := strings.ToLower(strings.TrimPrefix(a.String(), "RULE_ACTION_"))
		if a == ledgerv1.RuleAction_RULE_ACTION_HOLD && holdAccount != "" {
			name += "(" + holdAccount + ")"
		}
		out = append(out, name)
	}
	return cmp.Or(strings.Join(out, ","), "-")
}

// ruleKind says what a rule watches, in a few words.
func ruleKind(r *ledgerv1.Rule) string {
	switch k := r.GetKind().(type) {
	case *ledgerv1.Rule_Threshold:
		return "threshold > " + k.Threshold.GetAmount()
	case *ledgerv1.Rule_Velocity:
		v := k.Velocity
		s := fmt.Sprintf("velocity in %ds:", v.GetWindowSeconds())
		if v.GetMaxCount() > 0 {
			s += fmt.Sprintf(" count > %d", v.GetMaxCount())
		}
		if v.GetMaxSum() != "" {
			s += " sum > " + v.GetMaxSum()
		}
		return s
	case *ledgerv1.Rule_BalanceCrossing:
		return fmt.Sprintf("crossing %s %s", strings.ToLower(strings.TrimPrefix(k.BalanceCrossing.GetCrossing().String(), "CROSSING_")),
			k.BalanceCrossing.GetLevel())
	case *ledgerv1.Rule_NewCounterparty:
		return "new counterparty"
	case *ledgerv1.Rule_DormantReactivated:
		return fmt.Sprintf("dormant %ds reactivated", k.DormantReactivated.GetDormantSeconds())
	}
	return "-"
}

func (c *client) rulesDryRunCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "dry-run -f RULE_FILE [--from N] [--to N] [--from-time T] [--to-time T]",
		Short: "The alerts a rule would have raised over the log, changing nothing",
		Long: "Evaluates the rule in the file (YAML or JSON: a Rule, or a list of one) over the ledger's log as an after-commit\n" +
			"rule, and prints the alerts the events in the range would have raised: at most 1,000,000 events\n" +
			"and 1,000 alerts (then \"truncated\").",
		Example: "  ledgerctl rules dry-run -f big-debit.yaml\n" +
			"  ledgerctl rules dry-run -f big-debit.yaml --from-time 2026-12-01T00:00:00Z -o json",
		Args: noArgs("rules dry-run"),
	}
	fs := cmd.Flags()
	fs.StringVarP(&file, "file", "f", "", "a YAML or JSON file of one rule (- for standard input)")
	from := fs.Uint64("from", 0, "the first position evaluated (0: 1)")
	to := fs.Uint64("to", 0, "the last position evaluated (0: the head)")
	fromTime := fs.String("from-time", "", "only events recorded at or after this time, RFC 3339")
	toTime := fs.String("to-time", "", "only events recorded before this time, RFC 3339")
	required(cmd, "file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &ledgerv1.DryRunRuleRequest{Rule: &ledgerv1.Rule{}, FromPosition: *from, ToPosition: *to}
		if err := readProtoFile(file, cmd.InOrStdin(), req.Rule); err != nil {
			return err
		}
		for _, t := range []struct {
			flag, value string
			into        **timestamppb.Timestamp
		}{{"--from-time", *fromTime, &req.FromTime}, {"--to-time", *toTime, &req.ToTime}} {
			if t.value == "" {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, t.value)
			if err != nil {
				return usageError{fmt.Sprintf("%s: %v", t.flag, err)}
			}
			*t.into = timestamppb.New(at)
		}
		req.Ledger = c.ledger
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.mon.DryRunRule(ctx, req)
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			if err := c.printAlerts(resp.GetAlerts(), false); err != nil {
				return err
			}
			more := ""
			if resp.GetTruncated() {
				more = " (truncated: narrow the range for the rest)"
			}
			_, err = fmt.Fprintf(c.out, "%d alerts, %d events evaluated, positions %d..%d%s\n", len(resp.GetAlerts()),
				resp.GetEvents(), resp.GetFromPosition(), resp.GetToPosition(), more)
			return err
		})
	}
	return cmd
}

func (c *client) alertsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list [--rule ID] [--account ID]",
		Short:   "The alerts of after-commit rules, in position order",
		Example: "  ledgerctl alerts list\n  ledgerctl alerts list --rule big-debit --account users:42 -o json",
		Args:    noArgs("alerts list"),
	}
	fs := cmd.Flags()
	rule := fs.String("rule", "", "only this rule's alerts")
	account := fs.String("account", "", "only this account's alerts")
	limit := fs.Uint32("limit", 0, "at most this many a page (1..1000; 0: 100)")
	cursor := fs.String("cursor", "", "the page after this cursor (the last page's \"more\")")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.mon.ListAlerts(ctx, &ledgerv1.ListAlertsRequest{Ledger: c.ledger, RuleId: *rule, Account: *account,
				Limit: *limit, Cursor: *cursor, MinPosition: *minPos})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			if err := c.printAlerts(resp.GetAlerts(), true); err != nil {
				return err
			}
			return c.pageFooter(resp.GetNextCursor(), resp.GetPosition())
		})
	}
	return cmd
}

// printAlerts prints alerts, with where each was raised (RAISED: its
// AlertRaised's position, "-" not yet) for those of the read model.
func (c *client) printAlerts(alerts []*ledgerv1.Alert, raised bool) error {
	tw := c.tabwriter()
	head := "POSITION\tRULE\tVERSION\tACCOUNT\tTRANSFER\tFIGURES\tACTIONS\tRECORDED\t"
	if raised {
		head += "RAISED\t"
	}
	fmt.Fprintln(tw, head)
	for _, a := range alerts {
		var figures []string
		for k, v := range a.GetFigures() {
			figures = append(figures, k+"="+v)
		}
		sort.Strings(figures)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t", a.GetPosition(), a.GetRuleId(), a.GetRuleVersion(), a.GetAccount(),
			cmp.Or(a.GetTransferId(), "-"), strings.Join(figures, " "), actionNames(a.GetActions(), a.GetHoldAccount()),
			a.GetRecordedAt().AsTime().UTC().Format(time.RFC3339))
		if raised {
			at := "-"
			if p := a.GetRaisedPosition(); p > 0 {
				at = strconv.FormatUint(p, 10)
			}
			fmt.Fprintf(tw, "%s\t", at)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
