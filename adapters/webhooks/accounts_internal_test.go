package webhooks

import (
	"slices"
	"testing"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// TestAccountEventsMatchTheirAccount: every event about one account (its
// opening, bounds, metadata, close, freeze and unfreeze, its
// reconciliation, an alert about it) reaches a subscription whose pattern
// matches that account, and no other. A freeze, which a rule's FREEZE action records,
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
		domain.AlertRaised{ID: "l:5:big:" + id, Rule: "big", RuleVersion: 1, Position: 5, Account: id,
			Counterparties: []string{"merchants:1"}, Asset: "USD"},
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

// TestDetachCopiesPayloads: detached records equal the source's and share
// no byte with the frame they were decoded from.
func TestDetachCopiesPayloads(t *testing.T) {
	frame := []byte(`{"a":1}{"bb":2}{}`)
	recs := []eventstore.Record{{Position: 1, Type: "t", Payload: frame[:7]}, {Position: 2, Type: "u", Payload: frame[7:15]},
		{Position: 3, Type: "v", Payload: frame[15:]}}
	got := detach(recs)
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range got {
		if got[i].Position != recs[i].Position || got[i].Type != recs[i].Type || string(got[i].Payload) != string(recs[i].Payload) {
			t.Errorf("record %d: %+v, want %+v", i, got[i], recs[i])
		}
	}
	clear(frame)
	if string(got[0].Payload) != `{"a":1}` || string(got[1].Payload) != `{"bb":2}` || string(got[2].Payload) != `{}` {
		t.Errorf("payloads changed with the frame: %q %q %q", got[0].Payload, got[1].Payload, got[2].Payload)
	}
	if p := append(got[0].Payload, 'x'); string(got[1].Payload) != `{"bb":2}` || len(p) != 8 {
		t.Errorf("appending to one payload wrote into the next: %q", got[1].Payload)
	}
}
