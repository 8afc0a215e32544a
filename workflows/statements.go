package workflows

import (
	"context"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// ErrStatementLines: a statement import of no lines, or of more than
// commands.ItemsPerRequestMax.
var ErrStatementLines = domain.NewInvalid("lines", "statement lines out of bounds", "")

// Statements imports the lines of accounts' external statements.
type Statements struct {
	writers Writers
}

// NewStatements returns Statements that go through writers.
func NewStatements(writers Writers) *Statements { return &Statements{writers: writers} }

// Import records lines of account's statement from source, through the
// ledger's writer, which keeps each (source, external id) once: one result
// per line, in order, an EXISTS for a line imported before. Atomic: all the
// lines or none. A statement file larger than one call goes in several, each
// atomic; the lines' ids make sending a chunk again harmless.
//
// Errors: ErrStatementLines; the writers' (commands.ErrUnknownLedger, ...);
// the writer's (commands.ErrUnavailable, commands.ErrClosed, ctx's).
func (s *Statements) Import(ctx context.Context, ledger, account, source string, lines []*domain.ImportStatementLine,
	atomic bool) ([]commands.Result, error) {
	if n := len(lines); n == 0 || n > commands.ItemsPerRequestMax {
		return nil, refuse(ErrStatementLines, "%d items, want 1..%d", n, commands.ItemsPerRequestMax)
	}
	w, err := s.writers.Writer(ledger)
	if err != nil {
		return nil, err
	}
	cmds := make([]domain.Command, len(lines))
	for i, l := range lines {
		l.Account, l.Source = account, source
		cmds[i] = l
	}
	return w.SubmitWith(ctx, cmds, commands.SubmitOptions{Atomic: atomic})
}
