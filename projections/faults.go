package projections

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Faults records what the relay finds wrong with a ledger's stream in
// stream_faults, beside the projections' own faults (their checkpoints'),
// where every ledgerd reads them: projection status, /readyz, the metrics.
// It implements natsbus.Faults.
type Faults struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// NewFaults returns Faults over the read models in pool.
func NewFaults(pool *pgxpool.Pool, logger *slog.Logger) *Faults {
	if logger == nil {
		logger = slog.Default()
	}
	return &Faults{pool: pool, logger: logger}
}

// StreamDiverged records that ledger's stream is not the log's, for err; a
// failure to record it is logged (the relay has logged err itself).
func (f *Faults) StreamDiverged(ctx context.Context, ledger string, err error) {
	reason := err.Error()
	if len(reason) > FaultMax {
		reason = reason[:FaultMax]
	}
	ctx, cancel := context.WithTimeout(ctx, faultWriteTimeout)
	defer cancel()
	if _, werr := f.pool.Exec(ctx, `INSERT INTO stream_faults (ledger, fault) VALUES ($1, $2)
		ON CONFLICT (ledger) DO UPDATE SET fault = excluded.fault`, ledger, reason); werr != nil {
		f.logger.Warn("stream fault not recorded", "ledger", ledger, "err", werr)
	}
}

// StreamInStep clears ledger's stream fault: the relay found the stream's
// tail to be the log's.
func (f *Faults) StreamInStep(ctx context.Context, ledger string) {
	wctx, cancel := context.WithTimeout(ctx, faultWriteTimeout)
	defer cancel()
	if _, err := f.pool.Exec(wctx, `DELETE FROM stream_faults WHERE ledger = $1`, ledger); err != nil && ctx.Err() == nil {
		// Not when the relay is stopping (a rebuild's restart, a drain):
		// it clears the fault when it runs again.
		f.logger.Warn("stream fault not cleared", "ledger", ledger, "err", err)
	}
}

// Clear clears ledger's stream fault and its projections' faults, in one
// transaction: the stream was repaired. A runner or relay that still finds
// something wrong records it again.
//
// Errors: the database's.
func (f *Faults) Clear(ctx context.Context, ledger string) error {
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM stream_faults WHERE ledger = $1`, ledger); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET fault = NULL, fault_at = NULL
			WHERE ledger = $1 AND fault IS NOT NULL`, ledger)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear the faults of %s: %w", ledger, err)
	}
	return nil
}
