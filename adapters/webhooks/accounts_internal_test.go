package webhooks

import (
	"slices"
	"testing"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// TestAccountEventsMatchTheirAccount: every event about one account (its
// opening, bounds, metadata, close, freeze and unfreeze, its
// reconciliation) reaches a subscription whose pattern matches that
// account, and no other. A freeze, which a rule's FREEZE action records,
// reached none.
func TestAccountEventsMatchTheirAccount(t *testing.T) {
	const id = "users:7:wallet"
	for _, e := range []domain.Event{
		domain.AccountOpened{ID: id, Asset: "USD", Normal: domain.SideCredit},
		domain.AccountBoundsChanged{ID: id},
		domain.AccountMetadataSet{ID: id, Metadata: map[string]string{"k": "v"}},
		domain.AccountClosed{ID: id},
		domain.AccountFrozen{ID: id, Reason: "rule big-debit"},
		domain.AccountUnfrozen{ID: id},
		domain.StatementImported{Account: id, Source: "bank", ExternalID: "x1", Amount: domain.Amount{Scale: 2},
			Direction: domain.SideCredit, ValueDate: "2026-12-01"},
		domain.MatchingRulesSet{Account: id},
		domain.MatchedManually{Account: id},
		domain.Unmatched{Account: id},
	} {
		rec := &eventstore.Record{Ledger: "l", Position: 1, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
			Payload: domain.AppendEvent(nil, e)}
		if got := accountsOf(rec); !slices.Equal(got, []string{id}) {
			t.Errorf("%s: accounts %v, want [%s]", rec.Type, got, id)
		}
		if !wants(&Subscription{AccountPattern: "users:*:wallet"}, rec) {
			t.Errorf("%s: not wanted by a subscription to users:*:wallet", rec.Type)
		}
		if wants(&Subscription{AccountPattern: "merchants:*"}, rec) {
			t.Errorf("%s: wanted by a subscription to merchants:*", rec.Type)
		}
	}
}
