package workflows_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/workflows"
)

// The refusals that need no database: their sentinel for the transport's
// table, and a text that says it all. Import, Run and Import's other paths
// run end to end in internal/daemon (import, rebuild and reconciliation
// tests).
func TestRefusalsBeforeAnyPort(t *testing.T) {
	t.Parallel()
	err := workflows.NewRebuilds(nil, nil, nil).Run(context.Background(), "books", "nope", nil)
	if !errors.Is(err, workflows.ErrUnknownProjection) || !strings.Contains(err.Error(), "balances") {
		t.Errorf("rebuild of an unknown projection: %v, want ErrUnknownProjection naming the projections", err)
	}
	st := workflows.NewStatements(nil)
	for _, n := range []int{0, commands.ItemsPerRequestMax + 1} {
		lines := make([]*domain.ImportStatementLine, n)
		_, err := st.Import(context.Background(), "books", "bank", "acme", lines, true)
		if !errors.Is(err, workflows.ErrStatementLines) {
			t.Errorf("import of %d lines: %v, want ErrStatementLines", n, err)
		}
	}
}
