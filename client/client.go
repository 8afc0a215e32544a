// Package client is the Go client of ledgerd: typed calls for every RPC of
// ledger.v1, API-key and TLS options, retries of calls that failed on the
// way (Unavailable) with the same ids, and automatic batching of single
// transfers (CreateTransfer) from many goroutines into CreateTransfers
// requests.
//
// Retrying a command is safe because every command is idempotent by the ids
// it carries: a transfer, account or post that was applied before the
// connection broke answers EXISTS with its original result and position the
// second time, never a second effect. The client retries unary calls of
// the methods that are idempotent so (RetryPolicy); streaming calls are not
// retried.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// recvMax bounds a response message the client accepts: ledgerd's own send
// bound (adapters/grpcapi.SendMax, checked by a test), so that 8,192
// results or a full page of statement lines fit.
const recvMax = 64 << 20

// Errors of Dial and of the client's own calls.
var (
	// ErrNoTransportSecurity means Dial was given neither TLS (WithTLS,
	// WithCAFile) nor WithInsecure: plaintext must be asked for.
	ErrNoTransportSecurity = errors.New("no transport security: give WithTLS or WithCAFile, or WithInsecure for plaintext")
	// ErrInvalidOption means an option's value is out of its range.
	ErrInvalidOption = errors.New("invalid option")
)

// Client is a connection to ledgerd. The embedded service clients give a
// typed call for every RPC (c.GetBalances, c.ReadEvents, c.CreateLedger...);
// CreateTransfer adds automatic batching. A Client is safe for concurrent
// use; Close it when done.
type Client struct {
	ledgerv1.CommandServiceClient
	ledgerv1.QueryServiceClient
	ledgerv1.AuditServiceClient
	ledgerv1.AdminServiceClient
	ledgerv1.IntegrityServiceClient
	ledgerv1.ReconciliationServiceClient
	ledgerv1.MonitoringServiceClient
	ledgerv1.WebhookServiceClient

	conn    *grpc.ClientConn
	batches *batcher

	closeOnce sync.Once
	closeErr  error
}

// settings are what the options set.
type settings struct {
	apiKey      string
	tls         *tls.Config
	caFile      string
	insecure    bool
	dialTimeout time.Duration
	retry       RetryPolicy
	batch       BatchOptions
	dialOptions []grpc.DialOption
}

// Option configures Dial.
type Option func(*settings)

// WithAPIKey sends key with every call, as ledgerd expects it: the header
// "authorization: Bearer <key>".
func WithAPIKey(key string) Option { return func(s *settings) { s.apiKey = key } }

// WithTLS connects over TLS with cfg (its RootCAs, ServerName and client
// certificates).
func WithTLS(cfg *tls.Config) Option { return func(s *settings) { s.tls = cfg } }

// WithCAFile connects over TLS, trusting the PEM certificates in path (a
// private CA, or ledgerd's self-signed certificate).
func WithCAFile(path string) Option { return func(s *settings) { s.caFile = path } }

// WithInsecure connects in plaintext: the API key travels unencrypted. For
// a ledgerd on the same host or a test; anything else should use TLS.
func WithInsecure() Option { return func(s *settings) { s.insecure = true } }

// WithDialTimeout makes Dial connect at once and wait until the connection
// is ready, at most d; without it Dial returns at once and the first call
// connects.
func WithDialTimeout(d time.Duration) Option { return func(s *settings) { s.dialTimeout = d } }

// WithRetry replaces DefaultRetryPolicy; RetryPolicy{MaxAttempts: 1} turns
// retries off.
func WithRetry(p RetryPolicy) Option { return func(s *settings) { s.retry = p } }

// WithBatching replaces DefaultBatchOptions, the bounds of CreateTransfer's
// batches.
func WithBatching(o BatchOptions) Option { return func(s *settings) { s.batch = o } }

// WithDialOptions adds gRPC dial options (interceptors, a custom dialer),
// applied after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOptions = append(s.dialOptions, opts...) }
}

// Dial returns a Client of the ledgerd at target (host:port, or any gRPC
// target). It connects lazily unless WithDialTimeout is given.
//
// Errors: ErrNoTransportSecurity; ErrInvalidOption naming the option; the
// CA file's read or parse error; with WithDialTimeout, the connection not
// ready in time (wrapping ctx's error).
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	s := settings{retry: DefaultRetryPolicy, batch: DefaultBatchOptions}
	for _, o := range opts {
		o(&s)
	}
	if err := s.retry.validate(); err != nil {
		return nil, err
	}
	if err := s.batch.validate(); err != nil {
		return nil, err
	}
	if s.dialTimeout < 0 {
		return nil, fmt.Errorf("WithDialTimeout %s is negative: %w", s.dialTimeout, ErrInvalidOption)
	}
	creds, err := s.transport()
	if err != nil {
		return nil, err
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(recvMax)),
		grpc.WithChainUnaryInterceptor(s.retry.unaryInterceptor()),
	}
	if s.apiKey != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer{key: s.apiKey, secure: !s.insecure}))
	}
	conn, err := grpc.NewClient(target, append(dialOpts, s.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	if s.dialTimeout > 0 {
		if err := waitReady(ctx, conn, s.dialTimeout); err != nil {
			conn.Close()
			return nil, fmt.Errorf("dial %s: %w", target, err)
		}
	}
	c := &Client{
		CommandServiceClient:        ledgerv1.NewCommandServiceClient(conn),
		QueryServiceClient:          ledgerv1.NewQueryServiceClient(conn),
		AuditServiceClient:          ledgerv1.NewAuditServiceClient(conn),
		AdminServiceClient:          ledgerv1.NewAdminServiceClient(conn),
		IntegrityServiceClient:      ledgerv1.NewIntegrityServiceClient(conn),
		ReconciliationServiceClient: ledgerv1.NewReconciliationServiceClient(conn),
		MonitoringServiceClient:     ledgerv1.NewMonitoringServiceClient(conn),
		WebhookServiceClient:        ledgerv1.NewWebhookServiceClient(conn),
		conn:                        conn,
	}
	c.batches = newBatcher(c.CommandServiceClient, s.batch)
	return c, nil
}

// transport returns the transport credentials the options ask for.
func (s *settings) transport() (credentials.TransportCredentials, error) {
	switch {
	case s.insecure && (s.tls != nil || s.caFile != ""):
		return nil, fmt.Errorf("WithInsecure with WithTLS or WithCAFile: %w", ErrInvalidOption)
	case s.insecure:
		return insecure.NewCredentials(), nil
	case s.caFile != "":
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.tls != nil {
			cfg = s.tls.Clone()
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate: %w", s.caFile, ErrInvalidOption)
		}
		return credentials.NewTLS(cfg), nil
	case s.tls != nil:
		return credentials.NewTLS(s.tls), nil
	}
	return nil, ErrNoTransportSecurity
}

// waitReady connects conn and waits until it is ready, at most timeout.
func waitReady(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connection %s after %s: %w", s, timeout, ctx.Err())
		}
	}
	return nil
}

// Conn is the client's connection, for services of other packages (health).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close stops taking CreateTransfer calls, sends what they queued and waits
// for the answers (each batch bounded by BatchOptions.CallTimeout), then
// closes the connection. It may be called more than once.
//
// Errors: the connection's close error.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.batches.close()
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// bearer is an API key as per-call credentials.
type bearer struct {
	key    string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

// RequireTransportSecurity refuses to send the key in plaintext unless
// WithInsecure asked for plaintext.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
