// Package audit verifies a ledger's log and replays it: the auditor's side of
// the hash chain, run by ledgerctl on the auditor's own machine.
//
// Verify re-reads the log and checks that its positions are gapless from 1,
// that every hash is the SHA-256 of its event and that every prev_hash links
// to the event before; it folds the log through the domain (domain.State's
// Evolve asserts every invariant), then compares what the projections serve
// with the fold at the verified head: balances, the trial balance, every
// account's statement line by line, every transfer and every alert. It
// reports the first divergence exactly.
//
// Replay folds the log alone up to a position or a time and returns every
// account's balances and the trial balance there.
//
// Both read a Log: the AuditService of a running ledgerd (ServiceLog), the
// event store itself (StoreLog), or an exported JSON Lines file (FileLog).
package audit

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what a divergence is.
type Kind string

// Kinds of divergence, in the order Verify looks for them: the log's own
// (gap, hash, link, invariant, by position), then the projections' (balances,
// account, trial_balance, statement, transfer, alert).
const (
	// KindGap: a position is missing (or repeated) in the log.
	KindGap Kind = "gap"
	// KindHash: an event's hash is not the SHA-256 of its prev_hash and
	// canonical bytes: the event was altered.
	KindHash Kind = "hash"
	// KindLink: an event's prev_hash is not the hash of the event before it:
	// an event was replaced, inserted or removed with its hash recomputed.
	KindLink Kind = "link"
	// KindInvariant: the event breaks a rule of the domain when applied (a
	// posting to a missing account, a release of what is not held, a payload
	// that does not decode, ...).
	KindInvariant Kind = "invariant"
	// KindBalances: an account's balances as served differ from the replay's.
	KindBalances Kind = "balances"
	// KindAccount: an account as the accounts read model lists it (its
	// asset, side, bounds, metadata, status, opening or freeze) differs from
	// the replay's, or is missing or extra.
	KindAccount Kind = "account"
	// KindTrialBalance: an asset's line of the trial balance differs.
	KindTrialBalance Kind = "trial_balance"
	// KindStatement: an account's statement differs from its movements.
	KindStatement Kind = "statement"
	// KindTransfer: a transfer served differs from the replay's (missing,
	// extra, or a field), named by its id in Detail; Position is the
	// transfer's.
	KindTransfer Kind = "transfer"
	// KindAlert: an alert served differs from the replay's (missing, extra,
	// or a field), named by its id in Detail.
	KindAlert Kind = "alert"
)

// Divergence is one difference between the log and what it should be, or
// between the projections and the log.
type Divergence struct {
	Kind Kind `json:"kind"`
	// Position is where it is: the event at fault (log kinds), the last
	// movement of the account (balances) or asset (trial_balance), or the
	// first line that differs (statement).
	Position uint64 `json:"position"`
	Account  string `json:"account,omitempty"`
	Asset    string `json:"asset,omitempty"`
	// Field names what differs: a balance field, a statement line's field,
	// "count", ...
	Field    string `json:"field,omitempty"`
	Expected string `json:"expected"`
	Found    string `json:"found"`
	// Detail says where Found comes from or what the event was.
	Detail string `json:"detail,omitempty"`
}

func (d *Divergence) String() string {
	s := fmt.Sprintf("%s divergence at position %d", d.Kind, d.Position)
	if d.Account != "" {
		s += ", account " + d.Account
	}
	if d.Asset != "" {
		s += ", asset " + d.Asset
	}
	if d.Field != "" {
		s += ", " + d.Field
	}
	s += fmt.Sprintf(": expected %s, found %s", d.Expected, d.Found)
	if d.Detail != "" {
		s += " (" + d.Detail + ")"
	}
	return s
}

// DivergenceError is returned by Replay when the log is broken before the
// point asked for: a replay of it would mean nothing.
type DivergenceError struct{ Divergence *Divergence }

func (e *DivergenceError) Error() string { return "the log is broken: " + e.Divergence.String() }

var (
	// ErrBeyondHead means a position past the log's head.
	ErrBeyondHead = errors.New("beyond the head of the log")
)

// Report is Verify's answer.
type Report struct {
	Ledger string `json:"ledger"`
	// From and To are the positions verified; Head the log's head when
	// Verify started.
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	Head uint64 `json:"head"`
	// Events is how many events were read and checked.
	Events uint64 `json:"events"`
	// LastHash is the hash (hex) of the last event read: with To, what an
	// auditor writes down to check the next verification against.
	LastHash string `json:"last_hash,omitempty"`
	// Anchor, when From is after 1, is the stored prev_hash of the event at
	// From, on which the chain was anchored: it must be the LastHash of a
	// verification up to From-1.
	Anchor string `json:"anchor,omitempty"`
	// AnchorSigned says Anchor is the hash of a signed anchor at From-1
	// (Options.Anchors): the chain's start is confirmed, not taken from
	// the log.
	AnchorSigned bool `json:"anchor_signed,omitempty"`
	// Replayed says the log was folded through the domain and the
	// projections compared (only from position 1).
	Replayed bool `json:"replayed"`
	// Accounts, Assets, StatementLines and Transfers are what was compared.
	Accounts       int    `json:"accounts"`
	Assets         int    `json:"assets"`
	StatementLines uint64 `json:"statement_lines"`
	Transfers      uint64 `json:"transfers"`
	// AccountsCompared says every account listed by the accounts read
	// model was compared (it stood at To throughout).
	AccountsCompared bool `json:"accounts_compared,omitempty"`
	// Anchors is how many signed anchors of the ledger were checked.
	Anchors int `json:"anchors,omitempty"`
	// Notes say what was not checked, and why.
	Notes []string `json:"notes,omitempty"`
	// Divergence is the first divergence found; nil when the log and the
	// projections agree.
	Divergence *Divergence `json:"divergence,omitempty"`
	// Elapsed is how long Verify took.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Clean reports whether nothing diverged.
func (r *Report) Clean() bool { return r.Divergence == nil }
