package grpcapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// databaseUnreachable reports whether err says PostgreSQL could not be
// reached (or dropped the session), rather than that the request failed: such
// a request may be retried as is, here later or on another node, so it is
// answered Unavailable, like a command whose batch could not be committed,
// never Internal.
//
// It covers a failed connect (pgconn.ConnectError, which also wraps the
// context deadline of a pool acquire that never got a connection), a network
// error on an open connection, a connection pgx already closed, SQLSTATE class
// 08 (connection exception) and 57P01..57P03 (the server shut down, crashed, or
// cannot take connections yet).
func databaseUnreachable(err error) bool {
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // the caller's own deadline or cancel: said as such
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return pgconn.SafeToRetry(err) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// unavailableStatus answers a request that failed because PostgreSQL could
// not be reached. The cause is logged, not sent.
func unavailableStatus(err error) error {
	slog.Warn("request failed: PostgreSQL unreachable", "err", err)
	return status.Error(codes.Unavailable, "database unavailable: retry later")
}
