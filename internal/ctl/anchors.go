package ctl

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	"github.com/ledgerd/ledger/anchor"
	"github.com/ledgerd/ledger/anchor/anchorfile"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
)

// anchorsListMax bounds the anchors anchors list and an export's trailer
// gather: a year of one every 10 s.
const anchorsListMax = 1 << 22

// anchorsKeygenCmd writes a new anchor key pair.
func (c *client) anchorsKeygenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Write a new Ed25519 anchor key pair: PREFIX.key (0600, for ledgerd) and PREFIX.pub (for verifiers)",
		Long: `keygen writes a new key pair for signing anchors: PREFIX.key, the private key (PEM,
mode 0600), which ledgerd reads with -anchor-key-file and which never goes into
PostgreSQL; and PREFIX.pub, its public key, which audit verify --anchor-pubkey trusts.
To rotate, start ledgerd with the new key and keep the old .pub beside the new one
in the verifiers' key directory: anchors name their key.`,
		Example: "  ledgerctl anchors keygen --out /etc/ledgerd/anchor-2026",
		Args:    noArgs("anchors keygen"),
	}
	out := cmd.Flags().String("out", "", "path prefix of the two files")
	required(cmd, "out")
	cmd.RunE = func(*cobra.Command, []string) error {
		priv, pub, err := anchor.GenerateKey()
		if err != nil {
			return err
		}
		f, err := os.OpenFile(*out+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err // an existing key is never overwritten
		}
		if _, err := f.Write(priv); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(*out+".pub", pub, 0o644); err != nil {
			return err
		}
		k, err := anchor.ParsePublicKey(pub)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out, "key %s: private %s.key (0600), public %s.pub\n", anchor.KeyID(k), *out, *out)
		return err
	}
	return cmd
}

// anchorsListCmd prints a ledger's anchors as JSON Lines, the form audit
// verify --anchors reads.
func (c *client) anchorsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "Print a ledger's signed anchors (from ledgerd's NATS bucket) as JSON Lines",
		Example: "  ledgerctl anchors list --ledger acme > acme.anchors.jsonl",
		Args:    noArgs("anchors list"),
	}
	from := cmd.Flags().Uint64("from", 0, "first position")
	to := cmd.Flags().Uint64("to", 0, "last position (default: the last anchor)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := c.connect(); err != nil {
			return err
		}
		as, err := c.listAnchors(cmd.Context(), *from, *to)
		if err != nil {
			return err
		}
		for _, a := range as {
			b, err := a.MarshalJSON()
			if err != nil {
				return err
			}
			if _, err := c.out.Write(append(b, '\n')); err != nil {
				return err
			}
		}
		return nil
	}
	return cmd
}

// listAnchors pages through ListAnchors.
func (c *client) listAnchors(ctx context.Context, from, to uint64) ([]anchor.Anchor, error) {
	cl := ledgerv1.NewIntegrityServiceClient(c.conn)
	var out []anchor.Anchor
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := cl.ListAnchors(cctx, &ledgerv1.ListAnchorsRequest{Ledger: c.ledger, FromPosition: from, ToPosition: to})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, p := range resp.GetAnchors() {
			a, err := grpcapi.AnchorOf(p)
			if err != nil {
				return nil, err
			}
			if len(out) == anchorsListMax {
				return nil, fmt.Errorf("more than %d anchors: list a range (--from, --to)", anchorsListMax)
			}
			out = append(out, a)
		}
		if from = resp.GetNextFromPosition(); from == 0 {
			return out, nil
		}
	}
}

// trailerAnchorsMax bounds the anchors an export's trailer carries: the
// highest within its range. One anchor at a position proves every event up
// to it through the chain; a few more survive the loss of a key. Readers
// refuse a trailer of more.
const trailerAnchorsMax = audit.TrailerAnchorsMax

// trailerSpanFirst is the first span of positions, back from the last,
// searched for anchors; it widens 16-fold until trailerAnchorsMax are found
// or the range is covered, so that a list reads few anchors, dense or sparse.
const trailerSpanFirst = 1024

// anchorsWithin is the highest anchors of first..last for an export's
// trailer; none, with a warning, when ledgerd has none to give (anchoring
// off, NATS down, an older ledgerd).
func (c *client) anchorsWithin(ctx context.Context, first, last uint64) ([]anchor.Anchor, error) {
	if last == 0 {
		return nil, nil
	}
	for span := uint64(trailerSpanFirst); ; span *= 16 {
		lo := first
		if last-first+1 > span {
			lo = last - span + 1
		}
		as, err := c.listAnchors(ctx, lo, last)
		// FailedPrecondition: anchoring off (Unavailable before ledgerd
		// said so); Unavailable: NATS down; Unimplemented: an older ledgerd.
		if code := status.Code(err); code == codes.FailedPrecondition || code == codes.Unavailable || code == codes.Unimplemented {
			fmt.Fprintf(c.errOut, "ledgerctl: warning: the trailer carries no anchors: %v\n", status.Convert(err).Message())
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if len(as) >= trailerAnchorsMax || lo == first {
			return as[max(len(as)-trailerAnchorsMax, 0):], nil
		}
	}
}

// verifyAnchors reads --anchors and --anchor-pubkey for audit verify; with
// --in and no --anchors, the anchors are those of the export's trailer.
func verifyAnchors(path string, pubkeys []string, in string) ([]anchor.Anchor, *anchor.Keyring, error) {
	switch {
	case path == "" && len(pubkeys) == 0:
		return nil, nil, nil
	case path == "" && in != "":
		ring, err := anchor.LoadKeyring(pubkeys...)
		if err != nil {
			return nil, nil, usageError{fmt.Sprintf("--anchor-pubkey: %v", err)}
		}
		t, err := fileTrailer(in)
		if err != nil {
			return nil, nil, err
		}
		if len(t.Anchors) == 0 {
			return nil, nil, usageError{fmt.Sprintf("--in %s: its trailer carries no anchors: give --anchors", in)}
		}
		return t.Anchors, ring, nil
	case path == "" || len(pubkeys) == 0:
		return nil, nil, usageError{"--anchors and --anchor-pubkey go together: the anchors, and the public keys that verify them"}
	}
	ring, err := anchor.LoadKeyring(pubkeys...)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--anchor-pubkey: %v", err)}
	}
	as, err := anchorfile.Load(path)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--anchors: %v", err)}
	}
	if len(as) == 0 {
		return nil, nil, usageError{fmt.Sprintf("--anchors %s: no anchors", path)}
	}
	return as, ring, nil
}

// fileTrailer reads the trailer of an export: its last line
// (audit.ReadTrailerAhead).
func fileTrailer(path string) (audit.Trailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return audit.Trailer{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return audit.Trailer{}, err
	}
	t, err := audit.ReadTrailerAhead(f, st.Size())
	if err != nil {
		return audit.Trailer{}, fmt.Errorf("--in %s: %w", path, err)
	}
	return t, nil
}
