package daemon

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
	"github.com/ledgerd/ledger/workflows"
)

// Files dev mode writes the anchor key pair to, under the data dir: the
// private key (0600), and its public key for verifiers (ledgerctl audit
// verify --anchor-pubkey var/anchor.pub).
const (
	AnchorKeyFile    = "anchor.key"
	AnchorPubKeyFile = "anchor.pub"
)

// errNoAnchoring: Anchor was called on a ledgerd that signs nothing.
var errNoAnchoring = errors.New("anchoring is off: no anchor key (-anchor-key-file)")

// startAnchoring loads the anchor key (dev mode: generates it), and signs
// every ledger's moved head at -anchor-every into the file sink and the
// NATS bucket, on its own goroutine: never in an append.
//
// Errors: a key that cannot be read or written; an -anchor-pubkey that
// holds no key.
func (m *Main) startAnchoring() error {
	key, err := m.anchorKey()
	if err != nil || key == nil {
		return err
	}
	signer := anchor.NewSigner(key)
	dir := cmp.Or(m.Config.AnchorDir, filepath.Join(m.Config.DataDir, "anchors"))
	ring, err := m.anchorKeyring(signer)
	if err != nil {
		return err
	}
	m.anchorBucket = natsbus.NewAnchors(m.js, ring, m.Logger)
	m.anchoring = workflows.NewAnchoring(m.store, signer, m.Logger, m.anchorBucket, &anchorfile.Sink{Dir: dir})
	m.Logger.Info("anchoring: signing the ledgers' heads", "key", signer.KeyID(), "every", m.Config.AnchorEvery,
		"dir", dir, "bucket", natsbus.AnchorBucket)
	if m.Config.AnchorEvery > 0 {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.anchoring.Run(m.readersCtx, m.Config.AnchorEvery) }()
	}
	return nil
}

// anchorKeyring is the keys whose anchors in the NATS bucket count: the
// signer's, and those of -anchor-pubkey (keys rotated out).
//
// Errors: an -anchor-pubkey that cannot be read or holds no key.
func (m *Main) anchorKeyring(signer *anchor.Signer) (*anchor.Keyring, error) {
	if m.Config.AnchorPubKey == "" {
		return anchor.NewKeyring(signer.Public()), nil
	}
	ring, err := anchor.LoadKeyring(m.Config.AnchorPubKey)
	if err != nil {
		return nil, fmt.Errorf("-anchor-pubkey: %w", err)
	}
	ring.Add(signer.Public())
	return ring, nil
}

// anchorKey reads the signing key, or in dev mode generates it; nil when
// a service has none.
func (m *Main) anchorKey() (key ed25519.PrivateKey, err error) {
	var text []byte
	switch {
	case m.Config.AnchorKey != "":
		text = []byte(m.Config.AnchorKey)
	case m.Config.AnchorKeyFile != "":
		if text, err = anchor.ReadKeyFile(m.Config.AnchorKeyFile); err != nil {
			return nil, fmt.Errorf("-anchor-key-file: %w", err)
		}
	case m.devMode():
		if text, err = m.devAnchorKey(); err != nil {
			return nil, err
		}
	default:
		m.Logger.Warn("anchoring off: no -anchor-key-file (LEDGER_ANCHOR_KEY_FILE) nor LEDGER_ANCHOR_KEY; " +
			"the heads are not signed, and audit verify --anchors has nothing to check")
		return nil, nil
	}
	k, err := anchor.ParsePrivateKey(text)
	if err != nil {
		return nil, fmt.Errorf("anchor key: %w", err)
	}
	return k, nil
}

// devAnchorKey returns <data-dir>/anchor.key, generated with anchor.pub
// beside it when absent.
func (m *Main) devAnchorKey() ([]byte, error) {
	path := filepath.Join(m.Config.DataDir, AnchorKeyFile)
	if text, err := anchor.ReadKeyFile(path); err == nil {
		return text, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	priv, pub, err := anchor.GenerateKey()
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(m.Config.DataDir, AnchorPubKeyFile)
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return nil, fmt.Errorf("write the anchor public key: %w", err)
	}
	if err := writePrivate(path, priv); err != nil {
		return nil, fmt.Errorf("write the anchor key: %w", err)
	}
	m.Logger.Info("dev mode: generated the anchor signing key", "key", path, "public", pubPath)
	return priv, nil
}

// Anchor signs ledger's head now and publishes it (the file and the NATS
// bucket), moved or not: what a period close calls.
//
// Errors: errNoAnchoring; workflows.errNoHead; reading the head; a sink's.
func (m *Main) Anchor(ctx context.Context, ledger string) (anchor.Anchor, error) {
	if m.anchoring == nil {
		return anchor.Anchor{}, errNoAnchoring
	}
	return m.anchoring.Anchor(ctx, ledger)
}

// anchorPeriodClose signs the ledger's head once a period close committed
// at position: the anchor covers the PeriodClosed event (its trial balance
// and closing digest) through the chain, which is what makes a close
// signed. It does not block the call; a failure is logged, and the next
// interval's anchor covers the close anyway.
func (m *Main) anchorPeriodClose(ledger string, position uint64) {
	if m.anchoring == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		a, err := m.Anchor(m.readersCtx, ledger)
		switch {
		case errors.Is(err, workflows.ErrCovered):
			m.Logger.Info("period close covered by a later anchor", "ledger", ledger, "close_position", position)
			return
		case errors.Is(err, workflows.ErrNotExtended):
			m.Logger.Error("period close: not signed: the log is not what was signed before; verify the ledger against "+
				"its anchors (ledgerctl audit verify --anchors)", "ledger", ledger, "position", position, "err", err)
			return
		case errors.Is(err, anchor.ErrConflict):
			m.Logger.Error("period close: signed into the anchor file, but the NATS bucket holds another hash signed there: "+
				"the log is not what was signed before; verify the ledger against its anchors (ledgerctl audit verify --anchors)",
				"ledger", ledger, "position", position, "err", err)
			return
		case err != nil:
			m.Logger.Warn("period close: head not signed now; the next anchor covers it", "ledger", ledger, "position", position, "err", err)
			return
		}
		m.Logger.Info("period close signed", "ledger", ledger, "close_position", position, "anchor_position", a.Position)
	}()
}
