package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
)

// categoriesFileMax bounds a categories file: 1,000 categories of 32
// patterns and a description each fit.
const categoriesFileMax = 8 << 20

// categoryFile is a category as a file writes it (YAML or JSON).
type categoryFile struct {
	Name        string   `json:"name"`
	Parent      string   `json:"parent,omitempty"`
	Patterns    []string `json:"patterns,omitempty"`
	Description string   `json:"description,omitempty"`
}

func (c *client) categoriesDefineCmd() *cobra.Command {
	var (
		name, parent, description, file string
		patterns                        []string
	)
	cmd := &cobra.Command{
		Use:   "define (--name N [--parent P] [--pattern PAT]... [--description D] | -f FILE)",
		Short: "Define or redefine categories: the chart of accounts",
		Long: "Define a category (--name), or many from a YAML or JSON file (-f; - reads standard input): a list\n" +
			"of {name, parent, patterns, description}, or {categories: [...]}, parents before children.\n" +
			"A pattern is an account id whose segments (split on ':') may be '*', any one segment:\n" +
			"users:*:wallet. A category holds the accounts its patterns match and those of its\n" +
			"descendants. Redefining a category replaces it (and may move it under another parent);\n" +
			"the same definition again answers EXISTS.",
		Example: "  ledgerctl categories define --name assets\n" +
			"  ledgerctl categories define --name assets:cash --parent assets --pattern 'bank:*'\n" +
			"  ledgerctl categories define -f chart.yaml",
		Args: noArgs("categories define"),
	}
	fs := cmd.Flags()
	fs.StringVar(&name, "name", "", "the category's name, e.g. assets:cash")
	fs.StringVar(&parent, "parent", "", "its parent category (none: a root)")
	fs.StringArrayVar(&patterns, "pattern", nil, "an account pattern (repeat for more), e.g. 'users:*:wallet'")
	fs.StringVar(&description, "description", "", "free text")
	fs.StringVarP(&file, "file", "f", "", "a YAML or JSON file of categories (- for standard input)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var cats []categoryFile
		switch {
		case file != "" && (name != "" || parent != "" || description != "" || len(patterns) > 0):
			return usageError{"-f defines the file's categories: not with --name, --parent, --pattern or --description"}
		case file != "":
			var err error
			if cats, err = readCategoriesFile(file, cmd.InOrStdin()); err != nil {
				return err
			}
		case name == "":
			return usageError{"categories define takes --name or -f FILE"}
		default:
			cats = []categoryFile{{Name: name, Parent: parent, Patterns: patterns, Description: description}}
		}
		req := &ledgerv1.DefineCategoriesRequest{Ledger: c.ledger}
		for _, k := range cats {
			req.Categories = append(req.Categories, &ledgerv1.Category{Name: k.Name, Parent: k.Parent,
				Patterns: k.Patterns, Description: k.Description})
		}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.cmd.DefineCategories(ctx, req)
			if err != nil {
				return err
			}
			return c.printResults(resp, resp.GetResults())
		})
	}
	return cmd
}

// readCategoriesFile reads a list of categories, or {categories: [...]},
// in YAML or JSON: 1..domain.CategoriesPerRequestMax of them.
//
// Errors: usageError for a file that cannot be read or does not hold that.
func readCategoriesFile(path string, stdin io.Reader) ([]categoryFile, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usageError{fmt.Sprintf("-f: %v", err)}
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, categoriesFileMax+1))
	if err != nil {
		return nil, usageError{fmt.Sprintf("-f %s: %v", path, err)}
	}
	if len(b) > categoriesFileMax {
		return nil, usageError{fmt.Sprintf("-f %s: over %d bytes", path, categoriesFileMax)}
	}
	doc, err := yaml.YAMLToJSON(b) // JSON is YAML too
	if err != nil {
		return nil, usageError{fmt.Sprintf("-f %s: %v", path, err)}
	}
	var cats []categoryFile
	if d := bytes.TrimSpace(doc); len(d) > 0 && d[0] == '{' {
		var wrapped struct {
			Categories []categoryFile `json:"categories"`
		}
		err = strictJSON(doc, &wrapped)
		cats = wrapped.Categories
	} else {
		err = strictJSON(doc, &cats)
	}
	if err != nil {
		return nil, usageError{fmt.Sprintf("-f %s: %v (want a list of {name, parent, patterns, description})", path, err)}
	}
	if n := len(cats); n == 0 || n > domain.CategoriesPerRequestMax {
		return nil, usageError{fmt.Sprintf("-f %s: %d categories, want 1..%d", path, n, domain.CategoriesPerRequestMax)}
	}
	return cats, nil
}

// strictJSON decodes doc into v, refusing unknown fields: a misspelt
// "pattern" would otherwise define a category with none.
func strictJSON(doc []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (c *client) categoriesListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "The categories, in name order",
		Example: "  ledgerctl categories list\n  ledgerctl categories list -o yaml",
		Args:    noArgs("categories list"),
	}
	limit := cmd.Flags().Uint32("limit", 0, "at most this many a page (1..1000; 0: 1000)")
	cursor := cmd.Flags().String("cursor", "", "the page after this cursor (the last page's \"more\")")
	minPos := cmd.Flags().Uint64("min-position", 0, "wait until the projection has reached this position")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.query.ListCategories(ctx, &ledgerv1.ListCategoriesRequest{Ledger: c.ledger, Limit: *limit,
				Cursor: *cursor, MinPosition: *minPos})
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "NAME\tPARENT\tPATTERNS\tPOSITION\tDESCRIPTION\t")
			for _, v := range resp.GetCategories() {
				k := v.GetCategory()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t\n", k.GetName(), k.GetParent(), strings.Join(k.GetPatterns(), " "),
					v.GetPosition(), oneLine(k.GetDescription()))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return c.pageFooter(resp.GetNextCursor(), resp.GetPosition())
		})
	}
	return cmd
}

// pageFooter ends a page of a listing in a table: the --cursor of the next
// page, if there is one, and the position the page reflects.
func (c *client) pageFooter(next string, position uint64) error {
	if next != "" {
		fmt.Fprintf(c.out, "more: --cursor %s\n", next)
	}
	_, err := fmt.Fprintf(c.out, "as of position %d\n", position)
	return err
}

// oneLine keeps a table's row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (c *client) categoriesBalancesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "balances",
		Short: "Balances rolled up by category (each with its descendants), now or as of a position or time",
		Long: "Σ debits and credits, posted and pending, per category and asset, of the accounts the\n" +
			"category holds (its patterns' and its descendants', each account once). As of a position or\n" +
			"a time, the balances are those of then, under today's categories.",
		Example: "  ledgerctl categories balances\n" +
			"  ledgerctl categories balances --category assets --as-of-position 100\n" +
			"  ledgerctl categories balances --as-of-time 2026-12-01T00:00:00Z --effective -o json",
		Args: noArgs("categories balances"),
	}
	fs := cmd.Flags()
	category := fs.String("category", "", "one category and its descendants (none: every category)")
	asOfPos := fs.Uint64("as-of-position", 0, "just after this position")
	asOfTime := fs.String("as-of-time", "", "at this time (inclusive), RFC 3339")
	effective := fs.Bool("effective", false, "--as-of-time is business time (effective_at), not recorded time")
	minPos := fs.Uint64("min-position", 0, "wait until the projection has reached this position")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &ledgerv1.GetCategoryBalancesRequest{Ledger: c.ledger, Category: *category, AsOfPosition: *asOfPos,
			MinPosition: *minPos}
		switch {
		case *asOfTime != "" && *asOfPos != 0:
			return usageError{"--as-of-time: not with --as-of-position"}
		case *effective && *asOfTime == "":
			return usageError{"--effective goes with --as-of-time"}
		case *asOfTime != "":
			at, err := time.Parse(time.RFC3339Nano, *asOfTime)
			if err != nil {
				return usageError{"--as-of-time is an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"}
			}
			req.AsOfTime = timestamppb.New(at)
			if *effective {
				req.TimeBasis = ledgerv1.TimeBasis_TIME_BASIS_EFFECTIVE
			}
		}
		return c.call(cmd.Context(), func(ctx context.Context) error {
			resp, err := c.query.GetCategoryBalances(ctx, req)
			if err != nil {
				return err
			}
			if !c.human() {
				return c.printJSON(resp)
			}
			tw := c.tabwriter()
			fmt.Fprintln(tw, "CATEGORY\tASSET\tDEBITS\tCREDITS\tPENDING DR\tPENDING CR\tACCOUNTS\t")
			for _, b := range resp.GetBalances() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", b.GetCategory(), b.GetAsset(), b.GetDebitsPosted(),
					b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending(), b.GetAccounts())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.out, "as of position %d\n", resp.GetPosition())
			return err
		})
	}
	return cmd
}
