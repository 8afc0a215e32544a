package ctl

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/statementfile"
)

// importFlags are reconcile import's flags.
type importFlags struct {
	account, source, format string
	columns                 map[string]string
	delimiter, dateLayout   string
	decimalComma, thousands bool
}

// reconcileImport imports a statement file into an account's external
// statement. It reads the file twice: the first pass checks all of it and
// refuses it at its first fault, with the line and the reason, before
// anything is sent; the second sends chunks of statementfile.ChunkLines, each
// atomic. A chunk ledgerd refuses (a line imported before with other
// fields) stops the import: the chunks before it stay imported, and a
// re-run after the fix answers them EXISTS.
func (c *client) reconcileImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE --account A --source S",
		Short: "Import a bank or provider statement (CSV or JSON Lines) into an account's reconciliation",
		Long: `import imports a statement file into an account's external statement. The whole
file is checked first: a fault refuses it, with its line, before anything is sent. Then it
goes in chunks of 8,192 lines, each atomic; a refused chunk stops the import, the chunks
before it stay in, and a re-run answers them EXISTS.`,
		Example: "  ledgerctl reconcile import --account bank:acme --source acme-bank statement.csv\n" +
			"  ledgerctl reconcile import --account bank:acme --source acme-bank --map external_id=Ref --map amount=Amount \\\n" +
			"      --date-layout 02/01/2006 --decimal-comma export.csv",
	}
	f := importFlags{columns: map[string]string{}}
	fs := cmd.Flags()
	fs.StringVar(&f.account, "account", "", "the ledger account the statement is of")
	fs.StringVar(&f.source, "source", "", "who issued the statement (bank-x)")
	fs.StringVar(&f.format, "format", "", "csv or json (JSON Lines); default: from the file's extension")
	fs.Func("map", "FIELD=COLUMN: read a field from the CSV column of that name (repeatable)", func(v string) error {
		field, column, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("%q is not FIELD=COLUMN", v)
		}
		if _, dup := f.columns[field]; dup {
			return fmt.Errorf("%s mapped twice", field)
		}
		f.columns[field] = column
		return nil
	})
	fs.StringVar(&f.delimiter, "delimiter", ",", "the CSV field delimiter: one character, or \"tab\"")
	fs.StringVar(&f.dateLayout, "date-layout", domain.DateLayout, "the dates' layout, as Go writes 2 January 2006")
	fs.BoolVar(&f.decimalComma, "decimal-comma", false, "',' is the decimal point and '.' the thousands separator")
	fs.BoolVar(&f.thousands, "thousands", false, "accept thousands separators (\"1,234.56\")")
	cmd.ValidArgsFunction = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"csv", "txt", "jsonl", "ndjson", "json"}, cobra.ShellCompDirectiveFilterFileExt
	}
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"csv", "json"}, cobra.ShellCompDirectiveNoFileComp))
	required(cmd, "account", "source")
	cmd.RunE = func(cmd *cobra.Command, rest []string) error {
		if len(rest) != 1 {
			return usageError{"reconcile import takes one FILE"}
		}
		return c.reconcileImport(cmd.Context(), f, rest[0])
	}
	return cmd
}

// reconcileImport imports the statement file path.
func (c *client) reconcileImport(ctx context.Context, f importFlags, path string) error {
	rest := []string{path}
	opts, err := f.options(rest[0])
	if err != nil {
		return err
	}
	file, st, err := statementfile.Open(rest[0])
	if err != nil {
		return err
	}
	defer file.Close() // read only: nothing to flush
	if err := c.connect(); err != nil {
		return err
	}
	rc := ledgerv1.NewReconciliationServiceClient(c.conn)
	asset, scale, err := c.accountScale(ctx, f.account)
	if err != nil {
		return err
	}
	opts.Scale = scale

	bar := c.newProgress("", c.errOut)
	bar.update("checking (bytes)", 0, uint64(st.Size()))
	check, err := statementfile.Check(file, opts, func(n int64) {
		bar.update("checking (bytes)", uint64(n), uint64(st.Size()))
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("%s: %w (nothing was imported)", rest[0], err)
	}
	if err := statementfile.Rewind(file, st); err != nil {
		return fmt.Errorf("%s: %w (nothing was imported)", rest[0], err)
	}
	s := &importRun{ctx: ctx, c: c, rc: rc, req: &ledgerv1.ImportStatementRequest{Ledger: c.ledger, Account: f.account,
		Source: f.source, Atomic: true}, bar: c.newProgress("lines", c.errOut),
		chunks: check.Chunks,
		sum: importSummary{File: rest[0], Account: f.account, Asset: asset, Source: f.source, Lines: check.Lines,
			Repeats: check.Repeats, Chunks: (check.Lines + statementfile.ChunkLines - 1) / statementfile.ChunkLines}}
	if c.human() {
		fmt.Fprintf(c.out, "checked %s: %d lines, %s of up to %d; importing into %s (%s) from %s\n", rest[0],
			check.Lines, plural(s.sum.Chunks, "chunk"), statementfile.ChunkLines, f.account, asset, f.source)
	}
	start := time.Now()
	s.bar.update("importing", 0, uint64(check.Lines))
	err = statementfile.ReadChunks(file, opts, s.send)
	s.bar.finish()
	s.sum.Seconds = time.Since(start).Seconds()
	if s.sum.Seconds > 0 {
		s.sum.LinesPerSecond = float64(s.sum.Created+s.sum.Existing) / s.sum.Seconds
	}
	var se *statementfile.Error
	if errors.As(err, &se) {
		err = fmt.Errorf("%s: %w: %w", rest[0], statementfile.ErrChanged, err)
	}
	if err != nil {
		s.sum.Stopped = err.Error()
	}
	if perr := s.print(); err == nil {
		err = perr
	}
	return err
}

// options turns the flags into statementfile.Options.
//
// Errors: usageError.
func (f importFlags) options(path string) (statementfile.Options, error) {
	switch {
	case !domain.ValidID(f.account):
		return statementfile.Options{}, usageError{fmt.Sprintf("--account %q must match [A-Za-z0-9:_.@-]{1,%d}", f.account, domain.IDLenMax)}
	case len(f.source) > domain.SourceLenMax || !domain.ValidID(f.source):
		return statementfile.Options{}, usageError{fmt.Sprintf("--source %q must match [A-Za-z0-9:_.@-]{1,%d}", f.source, domain.SourceLenMax)}
	}
	format := f.format
	if format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".csv", ".txt":
			format = statementfile.CSV
		case ".jsonl", ".ndjson", ".json":
			format = statementfile.JSON
		default:
			return statementfile.Options{}, usageError{fmt.Sprintf("give --format csv or json: %s has no known extension", path)}
		}
	}
	if format != statementfile.CSV && format != statementfile.JSON {
		return statementfile.Options{}, usageError{"--format is csv or json"}
	}
	delim := f.delimiter
	if delim == "tab" || delim == `\t` {
		delim = "\t"
	}
	r, size := utf8.DecodeRuneInString(delim)
	if size != len(delim) || r == utf8.RuneError || r == '"' || r == '\n' || r == '\r' {
		return statementfile.Options{}, usageError{fmt.Sprintf("--delimiter %q: want one character other than a quote or a newline", f.delimiter)}
	}
	opts := statementfile.Options{Format: format, Columns: f.columns, Delimiter: r, DateLayout: f.dateLayout,
		DecimalComma: f.decimalComma, Thousands: f.thousands, Scale: -1}
	if err := opts.ValidateColumns(); err != nil {
		return statementfile.Options{}, usageError{err.Error()}
	}
	return opts, nil
}

// accountScale returns the account's asset and its scale: the balance is
// written with the asset's decimals. Asked of the writer, so an account
// opened a moment ago is found.
//
// Errors: an unknown account; the call's.
func (c *client) accountScale(ctx context.Context, account string) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.query.GetBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: c.ledger, Accounts: []string{account},
		Consistency: ledgerv1.Consistency_CONSISTENCY_STRONG})
	if err != nil {
		return "", 0, err
	}
	for _, b := range resp.GetBalances() {
		if b.GetAccount() == account {
			_, frac, _ := strings.Cut(b.GetBalance(), ".")
			return b.GetAsset(), len(frac), nil
		}
	}
	return "", 0, fmt.Errorf("no such account: %s (nothing was imported)", account)
}

// importSummary is what an import did; -o json prints it.
type importSummary struct {
	File    string `json:"file"`
	Account string `json:"account"`
	Asset   string `json:"asset"`
	Source  string `json:"source"`
	// Lines in the file; Repeats of them repeat an earlier line exactly.
	Lines   int `json:"lines"`
	Repeats int `json:"repeats"`
	// Chunks the file takes, and those that went in.
	Chunks         int `json:"chunks"`
	ChunksImported int `json:"chunks_imported"`
	// Per line: CREATED, EXISTS (imported before, or a repeat), refused
	// with a reason; not_imported counts the lines not in, refused or not.
	Created     int             `json:"created"`
	Existing    int             `json:"existing"`
	Refused     int             `json:"refused"`
	NotImported int             `json:"not_imported"`
	Refusals    []importRefusal `json:"refusals,omitempty"`
	// Position is the last line's position in the log: --min-position for a
	// report that includes the import.
	Position       uint64  `json:"position"`
	Seconds        float64 `json:"seconds"`
	LinesPerSecond float64 `json:"lines_per_second"`
	// Stopped says why the import stopped before the end.
	Stopped string `json:"stopped,omitempty"`
}

// importRefusal is a line ledgerd refused, by its place in the file.
type importRefusal struct {
	Line       int    `json:"line"`
	ExternalID string `json:"external_id"`
	Code       string `json:"code"`
	Detail     string `json:"detail,omitempty"`
}

// importRun sends one file's chunks.
type importRun struct {
	// ctx bounds the import (Ctrl-C); each call is bounded by callTimeout.
	ctx context.Context
	c   *client
	rc  ledgerv1.ReconciliationServiceClient
	req *ledgerv1.ImportStatementRequest
	bar *progress
	sum importSummary
	// sent counts the lines sent so far.
	sent int
	// chunks are the digests of the chunks as the first pass read them.
	chunks [][32]byte
}

// externalLines converts a chunk of a statement file to the request's lines,
// reusing dst's.
func externalLines(dst []*ledgerv1.ExternalLine, lines []*domain.ImportStatementLine) []*ledgerv1.ExternalLine {
	dst = dst[:0]
	for _, l := range lines {
		dir := ledgerv1.LineDirection_LINE_DIRECTION_CREDIT
		if l.Direction == domain.SideDebit {
			dir = ledgerv1.LineDirection_LINE_DIRECTION_DEBIT
		}
		dst = append(dst, &ledgerv1.ExternalLine{ExternalId: l.ExternalID, Amount: l.Amount, Direction: dir,
			ValueDate: l.ValueDate, Reference: l.Reference, Description: l.Description})
	}
	return dst
}

// send imports one chunk, atomically, and stops the import when a line of
// it is refused.
//
// Errors: errRefused; the call's.
func (s *importRun) send(lines []*domain.ImportStatementLine, at []int) error {
	// The file is read twice: a chunk goes only as it was checked.
	if i := s.sum.ChunksImported; i >= len(s.chunks) || statementfile.DigestChunk(lines) != s.chunks[i] {
		s.sum.NotImported = s.sum.Lines - s.sent
		return fmt.Errorf("chunk %d (file lines %d..%d) is not what was checked: %w", i+1, at[0], at[len(at)-1], statementfile.ErrChanged)
	}
	s.req.Lines = externalLines(s.req.Lines, lines)
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	resp, err := s.rc.ImportStatement(ctx, s.req)
	chunk := s.sum.ChunksImported + 1
	if err != nil {
		s.sum.NotImported = s.sum.Lines - s.sent
		return fmt.Errorf("chunk %d of %d (file lines %d..%d): %w", chunk, s.sum.Chunks, at[0], at[len(at)-1], err)
	}
	results := resp.GetResults()
	if len(results) != len(lines) {
		return fmt.Errorf("chunk %d: %d results for %d lines", chunk, len(results), len(lines))
	}
	var created, existing int
	var refusals []importRefusal
	for i, r := range results {
		switch r.GetCode() {
		case ledgerv1.ResultCode_RESULT_CODE_CREATED:
			created++
		case ledgerv1.ResultCode_RESULT_CODE_EXISTS:
			existing++
		case ledgerv1.ResultCode_RESULT_CODE_LINKED_ITEM_FAILED:
			// Refused only because another line of the chunk was.
		default:
			refusals = append(refusals, importRefusal{Line: at[i], ExternalID: lines[i].ExternalID,
				Code: strings.TrimPrefix(r.GetCode().String(), "RESULT_CODE_"), Detail: r.GetDetail()})
		}
		s.sum.Position = max(s.sum.Position, r.GetPosition())
	}
	if len(refusals) > 0 || created+existing != len(lines) {
		s.sum.Refused, s.sum.Refusals = len(refusals), refusals
		s.sum.NotImported = s.sum.Lines - s.sent
		return fmt.Errorf("chunk %d of %d (file lines %d..%d): %s refused, none of the chunk imported; "+
			"%s (%s) went in before it: %w", chunk, s.sum.Chunks, at[0], at[len(at)-1], plural(len(refusals), "line"),
			plural(s.sum.ChunksImported, "chunk"), plural(s.sent, "line"), errRefused)
	}
	s.sent += len(lines)
	s.sum.Created += created
	s.sum.Existing += existing
	s.sum.ChunksImported++
	s.bar.update("importing", uint64(s.sent), uint64(s.sum.Lines))
	return nil
}

// print prints the summary: refused lines first, one a line.
func (s *importRun) print() error {
	c, sum := s.c, &s.sum
	if !c.human() {
		return c.printAny(sum)
	}
	for _, r := range sum.Refusals {
		line := fmt.Sprintf("%-12s line %d  %s", r.Code, r.Line, r.ExternalID)
		if r.Detail != "" {
			line += "  " + r.Detail
		}
		fmt.Fprintln(c.out, line)
	}
	imported := sum.Created + sum.Existing
	fmt.Fprintf(c.out, "imported %d of %d lines, %d of %s: %d created, %d existing", imported, sum.Lines,
		sum.ChunksImported, plural(sum.Chunks, "chunk"), sum.Created, sum.Existing)
	if sum.Repeats > 0 {
		fmt.Fprintf(c.out, " (%d repeating a line of the file)", sum.Repeats)
	}
	if sum.Refused > 0 || sum.NotImported > 0 {
		fmt.Fprintf(c.out, "; %d refused, %d not imported", sum.Refused, sum.NotImported)
	}
	if sum.Position > 0 {
		fmt.Fprintf(c.out, "; position %d", sum.Position)
	}
	_, err := fmt.Fprintf(c.out, "; %.2f s, %.0f lines/s\n", sum.Seconds, sum.LinesPerSecond)
	return err
}

// plural is n and a noun that takes an s.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// reconcileRules replaces an account's matching rules.
func (c *client) reconcileRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules RULE... --account A",
		Short: "Set an account's matching rules, in order (first match wins)",
		Long: `rules replaces an account's matching rules. A RULE is KIND[:KEY=VALUE,...]:
  reference                        the line's reference is the transfer's
  amount_date:window=2,tolerance=0.05   the same amount within the window (days)
  split:window=2,group=4           several lines to one movement, or one to several`,
		Example:   "  ledgerctl reconcile rules --account bank:acme reference amount_date:window=2 split:window=2,group=4",
		ValidArgs: []string{domain.RuleReference, domain.RuleAmountDate, domain.RuleSplit},
	}
	account := cmd.Flags().String("account", "", "the account")
	required(cmd, "account")
	cmd.RunE = func(cmd *cobra.Command, specs []string) error {
		return c.reconcileRules(cmd.Context(), *account, specs)
	}
	return cmd
}

func (c *client) reconcileRules(ctx context.Context, account string, specs []string) error {
	switch {
	case len(specs) == 0:
		return usageError{"reconcile rules takes at least one RULE (reference, amount_date:window=2, split:window=2,group=4)"}
	case len(specs) > domain.MatchingRulesMax:
		return usageError{fmt.Sprintf("at most %d rules", domain.MatchingRulesMax)}
	}
	req := &ledgerv1.SetMatchingRulesRequest{Ledger: c.ledger, Account: account}
	for _, spec := range specs {
		r, err := parseRule(spec)
		if err != nil {
			return err
		}
		req.Rules = append(req.Rules, r)
	}
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewReconciliationServiceClient(c.conn).SetMatchingRules(ctx, req)
		if err != nil {
			return err
		}
		return c.printResults(resp, []*ledgerv1.ItemResult{resp.GetResult()})
	})
}

var ruleKindOf = map[string]ledgerv1.MatchingRuleKind{
	domain.RuleReference:  ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_REFERENCE,
	domain.RuleAmountDate: ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_AMOUNT_DATE,
	domain.RuleSplit:      ledgerv1.MatchingRuleKind_MATCHING_RULE_KIND_SPLIT,
}

// parseRule reads KIND[:KEY=VALUE,...]: window (days), tolerance (an
// amount), group (split only). Ranges are ledgerd's to check.
//
// Errors: usageError.
func parseRule(spec string) (*ledgerv1.MatchingRule, error) {
	kind, params, _ := strings.Cut(spec, ":")
	k, ok := ruleKindOf[strings.ToLower(kind)]
	if !ok {
		return nil, usageError{fmt.Sprintf("rule %q: the kind is reference, amount_date or split", spec)}
	}
	r := &ledgerv1.MatchingRule{Kind: k}
	if params == "" {
		return r, nil
	}
	for _, p := range strings.Split(params, ",") {
		key, value, _ := strings.Cut(p, "=")
		var err error
		switch key {
		case "window":
			var n uint64
			n, err = strconv.ParseUint(value, 10, 32)
			r.DateWindowDays = uint32(n)
		case "tolerance":
			_, err = domain.ParseDecimal(value)
			r.AmountTolerance = value
		case "group":
			var n uint64
			n, err = strconv.ParseUint(value, 10, 32)
			r.GroupMax = uint32(n)
		default:
			return nil, usageError{fmt.Sprintf("rule %q: %q is not window, tolerance or group", spec, key)}
		}
		if err != nil {
			return nil, usageError{fmt.Sprintf("rule %q: %s=%q is not a number", spec, key, value)}
		}
	}
	return r, nil
}

// parseLineRef reads SOURCE/EXTERNAL_ID: a source has no '/', an external
// id may.
//
// Errors: usageError.
func parseLineRef(s string) (*ledgerv1.LineRef, error) {
	source, id, ok := strings.Cut(s, "/")
	if !ok || source == "" || id == "" {
		return nil, usageError{fmt.Sprintf("--line %q is not SOURCE/EXTERNAL_ID", s)}
	}
	return &ledgerv1.LineRef{Source: source, ExternalId: id}, nil
}

// parseMovementRef reads TRANSFER_ID[#POSTING]: posting 0 when omitted.
//
// Errors: usageError.
func parseMovementRef(s string) (*ledgerv1.MovementRef, error) {
	id, posting, hasPosting := strings.Cut(s, "#")
	if id == "" {
		return nil, usageError{fmt.Sprintf("--movement %q is not TRANSFER_ID[#POSTING]", s)}
	}
	m := &ledgerv1.MovementRef{TransferId: id}
	if hasPosting {
		n, err := strconv.ParseUint(posting, 10, 32)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--movement %q: the posting is a number from 0", s)}
		}
		m.PostingIndex = uint32(n)
	}
	return m, nil
}

// reconcileMatch matches lines to movements by hand.
func (c *client) reconcileMatchCmd() *cobra.Command {
	req := &ledgerv1.MatchManuallyRequest{}
	cmd := &cobra.Command{
		Use:   "match --account A --id ID --line SOURCE/EXTID... --movement TRANSFER_ID[#POSTING]... --reason R",
		Short: "Match statement lines to ledger movements by hand",
		Example: "  ledgerctl reconcile match --account bank:acme --id m1 --line acme-bank/L-17 \\\n" +
			"      --movement t42 --movement t43#1 --reason \"two payouts, one bank line\"",
		Args: noArgs("reconcile match"),
		RunE: func(cmd *cobra.Command, _ []string) error { return c.reconcileMatch(cmd.Context(), req) },
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Account, "account", "", "the account")
	fs.StringVar(&req.Id, "id", "", "the match's id (its idempotency key)")
	fs.StringVar(&req.Reason, "reason", "", "why, for the auditors")
	fs.Func("line", "SOURCE/EXTERNAL_ID (repeatable)", func(v string) error {
		l, err := parseLineRef(v)
		req.Lines = append(req.Lines, l)
		return err
	})
	fs.Func("movement", "TRANSFER_ID[#POSTING] (repeatable)", func(v string) error {
		m, err := parseMovementRef(v)
		req.Movements = append(req.Movements, m)
		return err
	})
	required(cmd, "account", "id", "reason")
	return cmd
}

func (c *client) reconcileMatch(ctx context.Context, req *ledgerv1.MatchManuallyRequest) error {
	if len(req.Lines) == 0 || len(req.Movements) == 0 {
		return usageError{"reconcile match needs at least one --line and one --movement"}
	}
	req.Ledger = c.ledger
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewReconciliationServiceClient(c.conn).MatchManually(ctx, req)
		if err != nil {
			return err
		}
		return c.printResults(resp, []*ledgerv1.ItemResult{resp.GetResult()})
	})
}

// reconcileUnmatch dissolves the match of one line or one movement.
func (c *client) reconcileUnmatchCmd() *cobra.Command {
	req := &ledgerv1.UnmatchRequest{}
	cmd := &cobra.Command{
		Use:     "unmatch --account A (--line SOURCE/EXTID | --movement TRANSFER_ID[#POSTING]) --reason R",
		Short:   "Dissolve the match of one line or one movement",
		Example: "  ledgerctl reconcile unmatch --account bank:acme --line acme-bank/L-17 --reason \"wrong payout\"",
		Args:    noArgs("reconcile unmatch"),
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Account, "account", "", "the account")
	fs.StringVar(&req.Reason, "reason", "", "why, for the auditors")
	line := fs.String("line", "", "SOURCE/EXTERNAL_ID")
	movement := fs.String("movement", "", "TRANSFER_ID[#POSTING]")
	required(cmd, "account", "reason")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.reconcileUnmatch(cmd.Context(), req, *line, *movement)
	}
	return cmd
}

func (c *client) reconcileUnmatch(ctx context.Context, req *ledgerv1.UnmatchRequest, line, movement string) error {
	var err error
	switch {
	case (line == "") == (movement == ""):
		return usageError{"reconcile unmatch takes one of --line and --movement"}
	case line != "":
		if req.Line, err = parseLineRef(line); err != nil {
			return err
		}
	default:
		if req.Movement, err = parseMovementRef(movement); err != nil {
			return err
		}
	}
	req.Ledger = c.ledger
	return c.call(ctx, func(ctx context.Context) error {
		resp, err := ledgerv1.NewReconciliationServiceClient(c.conn).Unmatch(ctx, req)
		if err != nil {
			return err
		}
		return c.printResults(resp, []*ledgerv1.ItemResult{resp.GetResult()})
	})
}
