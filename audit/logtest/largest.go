package logtest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Largest is a log of, for every event type, the largest event a writer
// decides (through domain.Decide, as its writer does): each bounded field at
// its bound, in the characters JSON escapes most.
type Largest struct {
	// Records is the log, sealed, from position 1.
	Records []eventstore.Record
	// Events are the records' events, by position.
	Events map[uint64]domain.Event
	// ByType is the position of each event type's largest event.
	ByType map[string]uint64
}

// LargestLog builds the Largest log; it fails t if a writer refuses a
// command of it.
func LargestLog(t testing.TB) *Largest {
	t.Helper()
	l, byType := buildLargestLog(t)
	return &Largest{Records: l.recs, Events: l.events, ByType: byType}
}

// The largest of everything a command may hold, as validation bounds it.
var (
	// largestLedger is a ledger name of LedgerNameLenMax bytes.
	largestLedger = strings.Repeat("l", domain.LedgerNameLenMax)
	// largestAsset is an asset code of AssetCodeLenMax bytes.
	largestAsset = "A" + strings.Repeat("Z", domain.AssetCodeLenMax-1)
	// largestAmount has DigitsMax digits at ScaleMax: the longest amount.
	largestAmount = strings.Repeat("9", domain.DigitsMax-domain.ScaleMax) + "." + strings.Repeat("9", domain.ScaleMax)
	// largestNow is the writer's clock: whole microseconds, as the log
	// keeps them, six fractional digits in every time it writes.
	largestNow = time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
)

// escaped6 are the bytes validation lets through (valid UTF-8, no NUL) that
// JSON writes in six bytes each (\u00XX): control characters without a
// short escape, and what HTML escaping takes ('<', '>', '&'). No text is
// longer escaped, byte for byte.
var escaped6 = func() []byte {
	var b []byte
	for c := byte(1); c < 0x20; c++ {
		if !strings.ContainsRune("\b\t\n\f\r", rune(c)) {
			b = append(b, c)
		}
	}
	return append(b, '<', '>', '&')
}()

// worstText is n bytes of text that JSON escapes six-fold, told apart by
// seed.
func worstText(n, seed int) string {
	b := bytes.Repeat([]byte{escaped6[0]}, n)
	for i := 0; seed > 0 && i < n; i++ {
		b[i] = escaped6[seed%len(escaped6)]
		seed /= len(escaped6)
	}
	return string(b)
}

// worstMetadata is the largest metadata: MetadataKeysMax keys of
// MetadataKeyLenMax bytes, values filling MetadataBytesMax, every byte
// escaped six-fold; pairs keys of at most pairs.
func worstMetadata(pairs, seed int) map[string]string {
	n := min(pairs, domain.MetadataKeysMax)
	keyLen := min(domain.MetadataKeyLenMax, domain.MetadataBytesMax/n)
	valueLen := domain.MetadataBytesMax/n - keyLen
	m := make(map[string]string, n)
	for i := range n {
		m[worstText(keyLen, seed*n+i+1)] = worstText(valueLen, seed)
	}
	return m
}

// largestID is an id of IDLenMax bytes beginning with prefix.
func largestID(prefix string) string { return largestIDOf(prefix, domain.IDLenMax) }

func largestIDOf(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }

// largestLog decides commands on one ledger's state, as its writer does,
// and keeps the records of their events, sealed.
type largestLog struct {
	t      testing.TB
	state  *domain.State
	now    time.Time
	events map[uint64]domain.Event
	recs   []eventstore.Record
}

func newLargestLog(t testing.TB) *largestLog {
	return &largestLog{t: t, state: domain.NewState(), now: largestNow, events: map[uint64]domain.Event{}}
}

// apply decides c, answering a NeedPriorError from the events before, and
// applies its event; it fails the test when c is refused.
func (l *largestLog) apply(c domain.Command) domain.Event {
	l.t.Helper()
	if err := c.Validate(); err != nil {
		l.t.Fatalf("validate %T %.40s: %v", c, c.CommandID(), err)
	}
	var e domain.Event
	for {
		var err error
		e, err = domain.Decide(l.state, c, l.now)
		var need *domain.NeedPriorError
		if errors.As(err, &need) {
			c.(domain.PriorSetter).SetPrior(need.Position, l.events[need.Position])
			continue
		}
		if err != nil {
			l.t.Fatalf("decide %T %.40s: %v", c, c.CommandID(), err)
		}
		break
	}
	pos := l.state.Position() + 1
	l.state.Evolve(pos, e)
	l.events[pos] = e
	r := eventstore.Record{Ledger: largestLedger, Position: pos, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
		RecordedAt: l.now, CommandID: c.CommandID(), Payload: domain.AppendEvent(nil, e)}
	var prev eventstore.Hash
	if len(l.recs) > 0 {
		prev = l.recs[len(l.recs)-1].Hash
	}
	r.Seal(prev)
	l.recs = append(l.recs, r)
	return e
}

// accounts opens n accounts of the largest asset, without bounds, their ids
// beginning with prefix.
func (l *largestLog) accounts(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = largestID(fmt.Sprintf("%s%d-", prefix, i))
		l.apply(&domain.OpenAccount{ID: ids[i], Asset: largestAsset, Normal: domain.SideCredit})
	}
	return ids
}

// largestTransfer is a transfer of PostingsPerTransfer postings of the
// largest amount, each between two accounts of its own (a balance holds one
// largest amount at most), with the largest reference and metadata.
func (l *largestLog) largestTransfer(id string, seed int) *domain.CreateTransfer {
	debits, credits := l.accounts(id+"-d", domain.PostingsPerTransfer), l.accounts(id+"-c", domain.PostingsPerTransfer)
	c := &domain.CreateTransfer{ID: largestID(id), Reference: worstText(domain.ReferenceLenMax, seed),
		Metadata: worstMetadata(domain.MetadataKeysMax, seed)}
	for i := range debits {
		c.Postings = append(c.Postings, domain.PostingInput{Debit: debits[i], Credit: credits[i], Asset: largestAsset, Amount: largestAmount})
	}
	return c
}

// buildLargestLog decides, for every event type, the largest event a
// writer decides: each bounded field at its bound, in the characters JSON
// escapes most. It returns the log, and the position of each type's largest
// event.
func buildLargestLog(t testing.TB) (*largestLog, map[string]uint64) {
	l := newLargestLog(t)
	largest := map[string]uint64{}
	keep := func() {
		r := &l.recs[len(l.recs)-1]
		if at, ok := largest[r.Type]; !ok || len(r.Payload) > len(l.recs[at-1].Payload) {
			largest[r.Type] = r.Position
		}
	}

	// Assets: as many as a ledger holds, so that the trial balance of a
	// period's close has its most lines, each of the longest code.
	l.apply(&domain.DefineAsset{Code: largestAsset, Scale: domain.ScaleMax})
	keep()
	for i := 1; i < domain.AssetsMaxDefault; i++ {
		code := fmt.Sprintf("B%0*d", domain.AssetCodeLenMax-1, i)
		l.apply(&domain.DefineAsset{Code: code, Scale: domain.ScaleMax})
	}

	// Accounts.
	minBalance, maxBalance := "-"+largestAmount, largestAmount
	acct := largestID("acct-")
	l.apply(&domain.OpenAccount{ID: acct, Asset: largestAsset, Normal: domain.SideCredit, MinBalance: &minBalance,
		MaxBalance: &maxBalance, Metadata: worstMetadata(domain.MetadataKeysMax, 1)})
	keep()
	l.apply(&domain.SetAccountBounds{AccountID: acct, MinBalance: &minBalance, MaxBalance: &maxBalance})
	keep()
	l.apply(&domain.SetAccountMetadata{AccountID: acct, Metadata: worstMetadata(domain.MetadataKeysMax, 2)})
	keep()

	// Transfers, holds and what resolves them.
	committed := l.largestTransfer("t-", 3)
	l.apply(committed)
	keep()
	held := l.largestTransfer("h-posted-", 4)
	held.Pending, held.TimeoutSeconds = true, uint32(domain.TimeoutMax/time.Second)
	l.apply(held)
	keep()
	l.apply(&domain.PostPending{ID: largestID("post-"), PendingID: held.ID, Reference: worstText(domain.ReferenceLenMax, 5),
		Metadata: worstMetadata(domain.MetadataKeysMax, 5)})
	keep()
	voided := l.largestTransfer("h-voided-", 6)
	voided.Pending = true
	l.apply(voided)
	l.apply(&domain.VoidPending{ID: largestID("void-"), PendingID: voided.ID, Reference: worstText(domain.ReferenceLenMax, 7)})
	keep()
	expired := l.largestTransfer("h-expired-", 8)
	expired.Pending, expired.TimeoutSeconds = true, 1
	l.apply(expired)
	l.now = l.now.Add(2 * time.Second)
	l.apply(&domain.ExpirePending{PendingID: expired.ID})
	keep()
	l.apply(&domain.ReverseTransfer{ID: largestID("rev-"), TransferID: committed.ID, Reference: worstText(domain.ReferenceLenMax, 9),
		Metadata: worstMetadata(domain.MetadataKeysMax, 9)})
	keep()
	closing := l.accounts("closed-", 1)[0]
	l.apply(&domain.CloseAccount{AccountID: closing})
	keep()

	// Reconciliation: an account with MatchItemsMax lines and as many
	// movements, each the last posting of a transfer of its own.
	recon := l.accounts("recon-", 1)[0]
	pool := l.accounts("pool-", 2)
	source := largestIDOf("src-", domain.SourceLenMax)
	var lines []domain.LineRef
	for i := range domain.MatchItemsMax {
		line := domain.LineRef{Source: source, ExternalID: largestIDOf(fmt.Sprintf("ext/%d-", i), domain.ExternalIDLenMax)}
		l.apply(&domain.ImportStatementLine{Account: recon, Source: line.Source, ExternalID: line.ExternalID, Amount: largestAmount,
			Direction: domain.SideCredit, ValueDate: "9999-12-31", Reference: worstText(domain.ReferenceLenMax, 10+i),
			Description: worstText(domain.DescriptionLenMax, 10+i)})
		keep()
		lines = append(lines, line)
	}
	var movements []domain.MovementRef
	for i := range domain.MatchItemsMax {
		c := &domain.CreateTransfer{ID: largestID(fmt.Sprintf("m-%d-", i))}
		for range domain.PostingsPerTransfer - 1 {
			c.Postings = append(c.Postings, domain.PostingInput{Debit: pool[0], Credit: pool[1], Asset: largestAsset, Amount: "1"})
		}
		c.Postings = append(c.Postings, domain.PostingInput{Debit: recon, Credit: pool[1], Asset: largestAsset, Amount: "1"})
		l.apply(c)
		movements = append(movements, domain.MovementRef{TransferID: c.ID, PostingIndex: domain.PostingsPerTransfer - 1})
	}
	rules := make([]domain.MatchingRuleInput, domain.MatchingRulesMax)
	for i := range rules {
		rules[i] = domain.MatchingRuleInput{Kind: domain.RuleSplit, DateWindowDays: domain.DateWindowDaysMax,
			AmountTolerance: largestAmount, GroupMax: domain.GroupMaxMax}
	}
	l.apply(&domain.SetMatchingRules{Account: recon, Rules: rules})
	keep()
	l.apply(&domain.MatchManually{ID: largestID("match-"), Account: recon, Lines: lines, Movements: movements,
		Reason: worstText(domain.ReasonLenMax, 100)})
	keep()
	l.apply(&domain.Unmatch{Account: recon, Line: &lines[0], Reason: worstText(domain.ReasonLenMax, 101)})
	keep()

	// Categories.
	parent := largestID("cat-root-")
	l.apply(&domain.DefineCategory{Name: parent})
	var patterns []string
	for i := range domain.CategoryPatternsMax {
		patterns = append(patterns, largestID(fmt.Sprintf("*:%d:", i)))
	}
	l.apply(&domain.DefineCategory{Name: largestID("cat-"), Parent: parent, Patterns: patterns,
		Description: worstText(domain.CategoryDescriptionLenMax, 102)})
	keep()

	// Freezes.
	frozen := l.accounts("frozen-", 1)[0]
	l.apply(&domain.FreezeAccount{AccountID: frozen, Reason: worstText(domain.FreezeReasonLenMax, 103),
		Alert: &domain.AlertMark{Position: math.MaxUint64, ID: largestIDOf("alert-", domain.AlertIDLenMax)}})
	keep()
	l.apply(&domain.UnfreezeAccount{AccountID: frozen, Reason: worstText(domain.FreezeReasonLenMax, 104)})
	keep()

	// A rule, and its alert.
	holdAccount := l.accounts("hold-", 1)[0]
	rule := domain.Rule{ID: largestID("rule-"), Description: worstText(domain.RuleDescriptionLenMax, 105), Mode: domain.ModeAfterCommit,
		AccountPattern: largestID("nobody:*:"), AccountMetadata: worstMetadata(domain.RuleMetadataPairsMax, 105), Asset: largestAsset,
		Threshold: &domain.ThresholdRule{Side: domain.SideCredit}, Actions: []domain.RuleAction{domain.ActionFreeze, domain.ActionHold},
		HoldAccount: holdAccount}
	l.apply(&domain.DefineRule{Rule: rule, ThresholdAmount: largestAmount})
	rule.Disabled = true
	l.apply(&domain.DefineRule{Rule: rule, ThresholdAmount: largestAmount})
	keep()
	figures := map[string]string{}
	for i := range domain.AlertFiguresMax {
		figures[worstText(domain.AlertFigureLenMax, 106+i)] = worstText(domain.AlertFigureLenMax, 106)
	}
	var counterparties []string
	for i := range domain.AlertCounterpartiesMax {
		counterparties = append(counterparties, largestID(fmt.Sprintf("cp-%d-", i)))
	}
	at := uint64(l.state.Position())
	effective := largestNow.Add(999 * time.Nanosecond) // an alert's times are the event's, to the nanosecond
	l.apply(&domain.RaiseAlert{Alert: domain.AlertRaised{
		ID: fmt.Sprintf("%s:%d:%s:%s", largestLedger, at, rule.ID, acct), Rule: rule.ID, RuleVersion: 1, Position: at,
		TransferID: largestID("trigger-"), Account: acct, Counterparties: counterparties, Asset: largestAsset, Figures: figures,
		Freeze: true, HoldAccount: holdAccount, HoldRefused: worstText(domain.FreezeReasonLenMax, 122),
		RecordedAt: effective, EffectiveAt: &effective}})
	keep()

	// The period's close, last: nothing may take effect before it.
	l.apply(&domain.ClosePeriod{End: l.now})
	keep()
	return l, largest
}
