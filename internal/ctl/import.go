package ctl

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of log import.
const (
	// importEventsPerMessageMax is the most events one message carries: the
	// server's bound.
	importEventsPerMessageMax = grpcapi.ImportEventsPerMessageMax
	// importMessageBytesMax bounds the payloads of one message, well under
	// ledgerd's 64 MiB message bound.
	importMessageBytesMax = 16 << 20
	// importEnvelopeBytes is what an event costs on the wire besides its
	// payload, at most.
	importEnvelopeBytes = 512
	// importTimeout bounds an import; the largest (100M events) takes far less.
	importTimeout = 24 * time.Hour
)

// logImport streams an exported log (JSON Lines, one event with its hashes
// per line) into a new ledger: the one --ledger names, else the log's own.
// It first checks the whole file as ledgerd will (audit.ImportChecker), so a
// bad line is refused with its number before anything is sent; ledgerd checks
// again, and refuses the import at its first bad event.
func (c *client) logImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --in FILE",
		Short: "Import an exported log into a new, empty ledger (--ledger; default: the log's own)",
		Long: `import streams an exported log (JSON Lines, as log export writes it) into a new,
empty ledger: the one --ledger names, else the log's own. The whole file is checked first
(every hash and link, and its trailer: a file cut short, or without one, is refused), so a
bad line is refused with its number before anything is sent.

The events keep their positions, times and payloads. Imported into a ledger of another
name, the events are re-chained: each event's hash covers its ledger's name, so the new
ledger's hash chain starts anew from its first event and its hashes differ from the
file's; audit verify of the new ledger checks its own chain.`,
		Example: "  ledgerctl log import --in ledger.jsonl --ledger restored\n" +
			"  ledgerctl log import --in ledger.jsonl                     (into the log's own ledger, if it does not exist)",
		Args: noArgs("log import"),
	}
	in := cmd.Flags().String("in", "", "the JSON Lines file to import")
	_ = cmd.MarkFlagFilename("in", "jsonl")
	required(cmd, "in")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return c.logImport(cmd.Context(), *in) }
	return cmd
}

// logImport streams an exported log (JSON Lines, one event with its hashes
// per line) into a new ledger: the one --ledger names, else the log's own.
// It first checks the whole file as ledgerd will (audit.ImportChecker), so a
// bad line is refused with its number before anything is sent; ledgerd checks
// again, and refuses the import at its first bad event.
func (c *client) logImport(ctx context.Context, in string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close() // read only: nothing to flush
	n, source, head, err := importScan(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	target := source
	if c.ledgerGiven {
		target = c.ledger
	}
	table := c.human()
	if table {
		fmt.Fprintf(c.out, "checked %d events of ledger %s, head %x; importing into %s\n", n, source, head[:], target)
	}
	if err := c.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	resp, err := c.importSend(ctx, f, target, n)
	if err != nil {
		return err
	}
	if !table {
		return c.printJSON(resp)
	}
	fmt.Fprintf(c.out, "imported %d events into %s: head %d, hash %s\n", resp.GetEvents(), resp.GetLedger(),
		resp.GetPosition(), resp.GetHash())
	return nil
}

// importScan checks every line of f and returns the number of events, their
// ledger and the last one's hash.
//
// Errors: the first bad line, with its number.
func importScan(f *os.File) (uint64, string, eventstore.Hash, error) {
	index := audit.NewImportIndex(f, audit.ImportFrameLine, eventstore.ParseRecordJSON)
	checker := audit.NewImportChecker(index.Record)
	br := audit.ImportNewLineReader(f)
	var (
		offset int64
		tc     audit.TrailerCheck
	)
	if err := tc.WatchAhead(f); err != nil {
		return 0, "", eventstore.Hash{}, err
	}
	for line := 1; ; line++ {
		b, took, err := audit.ImportReadLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, "", eventstore.Hash{}, fmt.Errorf("line %d: %w", line, err)
		}
		at := offset
		offset += int64(took)
		if audit.ImportBlankLine(b) {
			continue
		}
		if audit.IsTrailer(b) {
			if err := tc.Trailer(b); err != nil {
				return 0, "", eventstore.Hash{}, fmt.Errorf("line %d: %w", line, err)
			}
			continue
		}
		r, err := eventstore.ParseRecordJSON(b)
		if err != nil {
			return 0, "", eventstore.Hash{}, fmt.Errorf("line %d: %w", line, err)
		}
		if err := tc.Event(&r); err != nil {
			return 0, "", eventstore.Hash{}, fmt.Errorf("line %d: %w", line, err)
		}
		if err := checker.Check(&r); err != nil {
			return 0, "", eventstore.Hash{}, fmt.Errorf("line %d: %w", line, err)
		}
		index.Add(at)
	}
	n, head := checker.Head()
	if n == 0 {
		return 0, "", eventstore.Hash{}, errors.New("no events")
	}
	if _, err := tc.End(); err != nil {
		return 0, "", eventstore.Hash{}, err
	}
	return n, checker.Ledger(), head, nil
}

// importSend streams the n events of f into target, printing progress at
// every tenth.
func (c *client) importSend(ctx context.Context, f *os.File, target string, n uint64) (*ledgerv1.ImportEventsResponse, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	stream, err := c.audit.ImportEvents(ctx)
	if err != nil {
		return nil, err
	}
	br := audit.ImportNewLineReader(f)
	msg := &ledgerv1.ImportEventsRequest{Ledger: target}
	// The plain lines ("sent 1600 of 16000 events ...") have always been
	// part of the table's output: there they stay.
	plain := c.errOut
	if c.human() {
		plain = c.out
	}
	bar := c.newProgress("events", plain)
	bar.quietFor = 0 // a line at each tenth, however fast: the output always had them
	defer bar.finish()
	bar.update("sent", 0, n)
	var sent, size uint64
	send := func() error {
		if err := stream.Send(msg); err != nil {
			return err
		}
		sent += uint64(len(msg.Events))
		bar.update("sent", sent, n)
		msg, size = &ledgerv1.ImportEventsRequest{}, 0
		return nil
	}
	for line := 1; ; line++ {
		b, _, err := audit.ImportReadLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if audit.ImportBlankLine(b) || audit.IsTrailer(b) {
			continue
		}
		r, err := eventstore.ParseRecordJSON(b)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w (the file changed since it was checked)", line, err)
		}
		msg.Events = append(msg.Events, importLogEvent(&r))
		size += uint64(len(r.Payload)) + importEnvelopeBytes
		if len(msg.Events) == importEventsPerMessageMax || size >= importMessageBytesMax {
			if err := send(); err != nil {
				return importClose(stream, err)
			}
		}
	}
	if len(msg.Events) > 0 {
		if err := send(); err != nil {
			return importClose(stream, err)
		}
	}
	return stream.CloseAndRecv()
}

// importClose ends a stream whose Send failed: ledgerd's answer says why (a
// refusal ends the stream, and Send then only sees io.EOF).
func importClose(stream grpc.ClientStreamingClient[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse],
	sendErr error) (*ledgerv1.ImportEventsResponse, error) {
	_, err := stream.CloseAndRecv()
	if err == nil {
		err = fmt.Errorf("send: %w", sendErr) // not expected: the server answered before the end
	}
	return nil, err
}

// importLogEvent is a record in its wire form.
func importLogEvent(r *eventstore.Record) *ledgerv1.LogEvent {
	return &ledgerv1.LogEvent{Ledger: r.Ledger, Position: r.Position, Type: r.Type, SchemaVersion: uint32(r.SchemaVersion),
		RecordedAt: timestamppb.New(r.RecordedAt), CommandId: r.CommandID, Payload: string(r.Payload),
		PrevHash: hex.EncodeToString(r.PrevHash[:]), Hash: hex.EncodeToString(r.Hash[:])}
}
