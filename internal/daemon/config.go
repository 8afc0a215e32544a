// Package daemon is ledgerd: it wires the event store, the writers, the relays,
// the projections and the APIs, on external servers or on its embedded default.
// End-to-end tests start it exactly as users do.
package daemon

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// errTLSPair means one of -tls-cert and -tls-key was given without the other.
var errTLSPair = errors.New("give both or neither")

// projectionLingerMax bounds -projection-linger: the lag it adds.
const projectionLingerMax = time.Second

// Bounds of -webhook-endpoint-rate, -webhook-endpoint-concurrency and
// -webhook-payload-max: the largest payload covers the largest event's
// delivery (domain.EventPayloadMax, a period's close over 10,000 assets,
// and its envelope); the least, any event but a period's close.
const (
	webhookEndpointRateMax        = 10_000
	webhookEndpointConcurrencyMax = 256
	webhookPayloadMin             = 64 << 10
	webhookPayloadMax             = 4 << 20
)

// Listen addresses when no -grpc-addr/-http-addr flag or LEDGER_* variable
// gives one. Dev mode (no PostgreSQL and no NATS URL) is one developer's
// machine: its ports stay on the loopback, because the banner, the admin key
// file and the trust between the embedded servers all assume nobody else
// reaches them. With external servers ledgerd is a service and listens on
// every interface.
const (
	grpcAddrDev     = "127.0.0.1:7070"
	httpAddrDev     = "127.0.0.1:8080"
	grpcAddrService = ":7070"
	httpAddrService = ":8080"
)

// Config is ledgerd's configuration: flags, with LEDGER_* environment variables
// as defaults.
type Config struct {
	// PostgresURL of the event store and read models; "" runs a private
	// cluster under DataDir with the machine's PostgreSQL binaries. Its
	// login appends (ledger_writer), and does the jobs below whose URL is
	// not given (ledger_app holds every role).
	PostgresURL string
	// PostgresProjectorURL, PostgresReadURL and PostgresKeysURL, when set,
	// are the logins of the projectors (ledger_projector), the queries
	// (ledger_reader) and the API keys (ledger_keys): docs/auth.md,
	// "Database roles".
	PostgresProjectorURL, PostgresReadURL, PostgresKeysURL string
	// PostgresReplicaURL, when set, is a streaming replica of the database
	// (a login in ledger_reader) that the queries read from (replica.go);
	// ReplicaFallbackAfter (0: ReplicaFallbackAfterDefault) is how long a
	// query waits there for its min_position before it reads from the
	// primary.
	PostgresReplicaURL   string
	ReplicaFallbackAfter time.Duration
	// NATSURL of JetStream; "" runs an embedded nats-server under DataDir.
	NATSURL string
	// NATSListen is the address the embedded nats-server listens on for
	// other processes; "" (the default) reaches it in-process only. It has
	// no credentials: anyone who reaches the address reads every ledger's
	// events and can publish on its streams.
	NATSListen string
	// NATSAuth holds the credentials and TLS files of an external NATS.
	NATSAuth NATSAuth
	GRPCAddr string
	HTTPAddr string
	DataDir  string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// StreamMaxAge bounds how long JetStream keeps a ledger's events; readers
	// fall back to Postgres for older ones.
	StreamMaxAge time.Duration
	// StreamPlainFrames makes the relays publish frames uncompressed, for a
	// rolling upgrade from a build that reads no other (docs/api.md).
	StreamPlainFrames bool
	// StreamReplicas is how many NATS servers hold each ledger's stream
	// when it is created: 0 is 3 on a cluster of three servers or more, 1
	// otherwise (streamReplicas).
	StreamReplicas int
	// PostgresConnsMax bounds the connection pool.
	PostgresConnsMax int
	// Pprof serves /debug/pprof/ on the HTTP port, for profiling.
	Pprof bool
	// OTLPEndpoint, when set, is where ledgerd sends its traces (OTLP over
	// gRPC, e.g. http://127.0.0.1:4317), or OTLPEndpointLog for its own log;
	// empty: no tracing.
	OTLPEndpoint string
	// LogFormat is text or json.
	LogFormat string
	// EffectivePastMax and EffectiveFutureMax bound a transfer's effective_at
	// around the time it is recorded.
	EffectivePastMax, EffectiveFutureMax time.Duration
	// ProjectionLinger is how long a projector that received a small batch
	// waits for more before applying it: fewer, larger transactions for a
	// little lag. Zero is projections.LingerDefault; at most
	// projectionLingerMax.
	ProjectionLinger time.Duration
	// Webhooks configures the webhook dispatcher; zero fields take the
	// defaults of adapters/webhooks (-webhook-max-age sets MaxAge).
	Webhooks webhooks.Options
	// SnapshotEvery is how many events a writer commits between snapshots
	// of its state, from which it starts instead of folding the whole log;
	// 0 disables snapshots, taking and loading them.
	SnapshotEvery int
	// AuthDisabled turns API keys off: every call is allowed, from anyone
	// who reaches the ports. The zero value is auth on.
	AuthDisabled bool
	// AdminKey (lk_<id>_<secret>) is made an admin key of every ledger at
	// start unless it is one already: the bootstrap key of a ledgerd on
	// external servers. Stored hashed, like every key.
	AdminKey string
	// TLSCert and TLSKey are PEM files; given, gRPC and HTTP serve TLS.
	TLSCert, TLSKey string
	// ConnsMax bounds the connections each of the gRPC and HTTP listeners
	// holds; 0 is ConnsMaxDefault (see serve.go).
	ConnsMax int
	// LedgerIdle is how long a ledger's writer runs with nothing to do
	// before it stops, its relay and projectors with it once caught up; the
	// next command starts them again. Zero is LedgerIdleDefault; at most
	// ledgerIdleMax.
	LedgerIdle time.Duration
	// AnchorKeyFile is the Ed25519 private key (PEM) that signs anchors;
	// AnchorKey the same from the environment (LEDGER_ANCHOR_KEY, PEM or the
	// base64 of the seed). Neither is ever stored in PostgreSQL. Without
	// either, dev mode generates <data-dir>/anchor.key and a service signs
	// nothing.
	AnchorKeyFile, AnchorKey string
	// AnchorPubKey is a public key file, or a directory of them (*.pub,
	// *.pem), of anchor keys rotated out: the NATS bucket's anchors they
	// signed still count. The signing key's own always does; an entry of
	// the bucket no trusted key signed is passed over (natsbus.Anchors).
	AnchorPubKey string
	// AnchorDir receives one JSON Lines file of anchors per ledger; ""
	// is <data-dir>/anchors.
	AnchorDir string
	// Console serves the operator console on the HTTP port under
	// /console/ (adapters/httpapi/console): static files, and every page a
	// REST call with the user's API key.
	Console bool
	// AnchorEvery is how often each ledger's head is signed when it moved;
	// 0 signs only when asked (Main.Anchor).
	AnchorEvery time.Duration
	// Roles are the jobs this process does (roles.go); the zero value is
	// all three.
	Roles Roles
	// PartitionEvents, for `ledgerd migrate` alone, turns the events table
	// into this many partitions by ledger (eventstore.PartitionEvents); 0
	// leaves it as it is.
	PartitionEvents int
	// WritersMax bounds the ledgers this process writes at once; past it,
	// commands for other ledgers go to other writer nodes. 0 is
	// commands.LedgersMaxDefault.
	WritersMax int
	// AdvertiseAddr is the gRPC address other nodes reach this one at; ""
	// is the listener's, an unspecified host replaced by the host's name.
	AdvertiseAddr string
	// NodeID names this process in the registry of nodes (ledgerctl nodes);
	// "" is <host>:<gRPC port>.
	NodeID string
}

// LedgerIdleDefault is how long an idle ledger keeps its writer, relay and
// projectors: long enough that a steady trickle of commands never pays the
// start (a load of the ledger's state), short enough that a thousand
// quiet ledgers do not hold their goroutines.
const LedgerIdleDefault = time.Minute

// ledgerIdleMax bounds -ledger-idle.
const ledgerIdleMax = 24 * time.Hour

// anchorEveryMax bounds -anchor-every: what an undetected rewrite of the
// tail may cover.
const anchorEveryMax = 24 * time.Hour

// snapshotEveryDefault takes a snapshot every million events: a few seconds
// of the writer's time (its encoding) per million, against a start-up that
// folds at most a million events of log.
const snapshotEveryDefault = 1_000_000

// ParseFlags reads args over the environment (getenv, e.g. os.Getenv).
//
// Errors: a flag error (usage is written to out).
func ParseFlags(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var c Config
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	fs.SetOutput(out)
	// Secrets (a URL's password, a key) are never flag defaults: the flag
	// package prints defaults in its usage text, on -h and on any mistyped
	// flag. They are taken from the environment after parsing.
	fs.StringVar(&c.PostgresURL, "postgres-url", "", "PostgreSQL URL (env LEDGER_POSTGRES_URL); empty: a private cluster under -data-dir")
	for _, r := range []struct {
		flag, env, role string
		into            *string
	}{
		{"postgres-projector-url", "LEDGER_POSTGRES_PROJECTOR_URL", "ledger_projector", &c.PostgresProjectorURL},
		{"postgres-read-url", "LEDGER_POSTGRES_READ_URL", "ledger_reader", &c.PostgresReadURL},
		{"postgres-keys-url", "LEDGER_POSTGRES_KEYS_URL", "ledger_keys", &c.PostgresKeysURL},
	} {
		fs.StringVar(r.into, r.flag, "", "PostgreSQL URL of a login in "+r.role+" (env "+r.env+"); empty: -postgres-url's login")
	}
	fs.StringVar(&c.PostgresReplicaURL, "postgres-replica-url", "",
		"PostgreSQL URL of a streaming replica, a login in ledger_reader, that queries read from (env LEDGER_POSTGRES_REPLICA_URL); empty: none")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS URL with JetStream (env LEDGER_NATS_URL); empty: an embedded server under -data-dir")
	fs.StringVar(&c.NATSListen, "nats-listen", getenv("LEDGER_NATS_LISTEN"),
		"HOST:PORT the embedded NATS listens on for other processes, without credentials (env LEDGER_NATS_LISTEN); empty: in-process only")
	c.NATSAuth.register(fs, getenv)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", getenv("LEDGER_GRPC_ADDR"),
		"gRPC listen address (env LEDGER_GRPC_ADDR); empty: "+grpcAddrDev+" in dev mode (no URLs), else "+grpcAddrService)
	fs.StringVar(&c.HTTPAddr, "http-addr", getenv("LEDGER_HTTP_ADDR"),
		"HTTP listen address: REST, health, metrics (env LEDGER_HTTP_ADDR); empty: "+httpAddrDev+" in dev mode, else "+httpAddrService)
	fs.StringVar(&c.DataDir, "data-dir", env("LEDGER_DATA_DIR", "./var"), "data directory of the embedded servers (env LEDGER_DATA_DIR)")
	fs.StringVar(&c.LogLevel, "log-level", env("LEDGER_LOG_LEVEL", "info"), "debug, info, warn or error (env LEDGER_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("LEDGER_LOG_FORMAT", "text"), "text or json: one JSON object a line, with trace_id and span_id when traced (env LEDGER_LOG_FORMAT)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", getenv("LEDGER_OTLP_ENDPOINT"),
		"send traces by OTLP over gRPC to this URL, e.g. http://127.0.0.1:4317, or \"log\": write each span to ledgerd's log (env LEDGER_OTLP_ENDPOINT); empty: no tracing")
	maxAge := env("LEDGER_STREAM_MAX_AGE", "168h")
	fs.Func("stream-max-age", "how long JetStream keeps events, e.g. 168h; 0 keeps them (env LEDGER_STREAM_MAX_AGE, default 168h)", func(s string) error {
		maxAge = s
		return nil
	})
	fs.BoolVar(&c.StreamPlainFrames, "stream-plain-frames", getenv("LEDGER_STREAM_PLAIN_FRAMES") == "true",
		"publish events in uncompressed frames, readable by builds that read no compressed ones (env LEDGER_STREAM_PLAIN_FRAMES=true)")
	fs.IntVar(&c.PostgresConnsMax, "postgres-conns-max", 32, "PostgreSQL connection pool size")
	fs.IntVar(&c.ConnsMax, "conns-max", 0, "connections held per listener, gRPC and HTTP each; 0: 4096")
	fs.BoolVar(&c.Pprof, "pprof", getenv("LEDGER_PPROF") == "true", "serve /debug/pprof/ on the HTTP port (env LEDGER_PPROF=true)")
	var envErr error
	envDuration := func(key string, def time.Duration) time.Duration {
		v := getenv(key)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil && envErr == nil {
			envErr = fmt.Errorf("%s=%q: %w", key, v, err)
		}
		return d
	}
	envInt := func(key string, def int) int {
		v := getenv(key)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil && envErr == nil {
			envErr = fmt.Errorf("%s=%q: %w", key, v, err)
		}
		return n
	}
	fs.DurationVar(&c.EffectivePastMax, "effective-past-max", envDuration("LEDGER_EFFECTIVE_PAST_MAX", domain.DefaultPolicy.EffectivePastMax),
		"how far in the past a transfer's effective_at may be (env LEDGER_EFFECTIVE_PAST_MAX)")
	fs.DurationVar(&c.EffectiveFutureMax, "effective-future-max", envDuration("LEDGER_EFFECTIVE_FUTURE_MAX", domain.DefaultPolicy.EffectiveFutureMax),
		"how far in the future a transfer's effective_at may be (env LEDGER_EFFECTIVE_FUTURE_MAX)")
	fs.DurationVar(&c.ProjectionLinger, "projection-linger", envDuration("LEDGER_PROJECTION_LINGER", projections.LingerDefault),
		"how long a projector waits for more events after a small batch (env LEDGER_PROJECTION_LINGER)")
	fs.DurationVar(&c.Webhooks.MaxAge, "webhook-max-age", envDuration("LEDGER_WEBHOOK_MAX_AGE", webhooks.MaxAgeDefault),
		"how long a webhook delivery is retried before it is a dead letter (env LEDGER_WEBHOOK_MAX_AGE)")
	fs.IntVar(&c.Webhooks.EndpointRate, "webhook-endpoint-rate", envInt("LEDGER_WEBHOOK_ENDPOINT_RATE", webhooks.EndpointRateDefault),
		fmt.Sprintf("webhook requests started a second to one endpoint (host and port), every subscription to it together, 1..%d "+
			"(env LEDGER_WEBHOOK_ENDPOINT_RATE)", webhookEndpointRateMax))
	fs.IntVar(&c.Webhooks.PayloadMax, "webhook-payload-max", envInt("LEDGER_WEBHOOK_PAYLOAD_MAX", webhooks.PayloadMaxDefault),
		fmt.Sprintf("bytes of a webhook delivery's body, %d..%d; a larger event's delivery is a dead letter at once "+
			"(env LEDGER_WEBHOOK_PAYLOAD_MAX)", webhookPayloadMin, webhookPayloadMax))
	fs.IntVar(&c.Webhooks.EndpointConcurrency, "webhook-endpoint-concurrency",
		envInt("LEDGER_WEBHOOK_ENDPOINT_CONCURRENCY", webhooks.EndpointConcurrencyDefault),
		fmt.Sprintf("webhook requests in flight to one endpoint, 1..%d (env LEDGER_WEBHOOK_ENDPOINT_CONCURRENCY)",
			webhookEndpointConcurrencyMax))
	fs.DurationVar(&c.LedgerIdle, "ledger-idle", envDuration("LEDGER_LEDGER_IDLE", LedgerIdleDefault),
		"how long an idle ledger keeps its writer, relay and projectors (env LEDGER_LEDGER_IDLE)")
	fs.IntVar(&c.SnapshotEvery, "snapshot-every", envInt("LEDGER_SNAPSHOT_EVERY", snapshotEveryDefault),
		"events between snapshots of a writer's state; 0 disables snapshots (env LEDGER_SNAPSHOT_EVERY)")
	console := true
	switch v := getenv("LEDGER_CONSOLE"); v {
	case "", "on", "true", "1":
	case "off", "false", "0":
		console = false
	default:
		envErr = cmp.Or(envErr, fmt.Errorf("LEDGER_CONSOLE=%q: want on or off", v))
	}
	fs.BoolVar(&c.Console, "console", console, "serve the operator console under /console/ on the HTTP port (env LEDGER_CONSOLE=off turns it off)")
	auth := true
	switch v := getenv("LEDGER_AUTH"); v {
	case "", "on", "true", "1":
	case "off", "false", "0":
		auth = false
	default:
		envErr = cmp.Or(envErr, fmt.Errorf("LEDGER_AUTH=%q: want on or off", v))
	}
	fs.BoolVar(&auth, "auth", auth, "require API keys; -auth=false lets anyone who reaches the ports do anything (env LEDGER_AUTH=off)")
	fs.StringVar(&c.AdminKey, "admin-key", "",
		"bootstrap admin key lk_<12 hex>_<secret>, made an admin key at start if it is not one (env LEDGER_ADMIN_KEY)")
	fs.StringVar(&c.TLSCert, "tls-cert", getenv("LEDGER_TLS_CERT"), "PEM certificate: serve TLS on the gRPC and HTTP ports (env LEDGER_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", getenv("LEDGER_TLS_KEY"), "PEM private key of -tls-cert (env LEDGER_TLS_KEY)")
	fs.StringVar(&c.AnchorKeyFile, "anchor-key-file", getenv("LEDGER_ANCHOR_KEY_FILE"),
		"Ed25519 private key (PEM) signing the anchors of the ledgers' heads (env LEDGER_ANCHOR_KEY_FILE, or the key in LEDGER_ANCHOR_KEY); "+
			"empty: generated in -data-dir in dev mode, else no anchors")
	fs.StringVar(&c.AnchorPubKey, "anchor-pubkey", getenv("LEDGER_ANCHOR_PUBKEY"),
		"public key (PEM), or a directory of *.pub and *.pem, of anchor keys rotated out, whose anchors in the NATS bucket still count "+
			"(env LEDGER_ANCHOR_PUBKEY); the signing key's own always does")
	fs.StringVar(&c.AnchorDir, "anchor-dir", getenv("LEDGER_ANCHOR_DIR"), "directory of the anchor files, one per ledger (env LEDGER_ANCHOR_DIR); empty: <data-dir>/anchors")
	fs.DurationVar(&c.AnchorEvery, "anchor-every", envDuration("LEDGER_ANCHOR_EVERY", workflows.AnchorEveryDefault),
		"how often each ledger's head is signed when it moved; 0: only at a period close (env LEDGER_ANCHOR_EVERY)")
	fs.DurationVar(&c.ReplicaFallbackAfter, "replica-fallback-after", envDuration("LEDGER_REPLICA_FALLBACK_AFTER", ReplicaFallbackAfterDefault),
		"how long a query waits for the read replica to reach its min_position before it reads from the primary (env LEDGER_REPLICA_FALLBACK_AFTER)")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", envInt("LEDGER_STREAM_REPLICAS", 0),
		"NATS servers holding each ledger's new stream, 1 to 5; 0: 3 on a cluster of three or more, else 1 (env LEDGER_STREAM_REPLICAS)")
	fs.IntVar(&c.WritersMax, "writers-max", envInt("LEDGER_WRITERS_MAX", commands.LedgersMaxDefault),
		fmt.Sprintf("ledgers this process writes at once, 1 to %d; past it commands go to other writer nodes (env LEDGER_WRITERS_MAX)",
			commands.LedgersMaxDefault))
	fs.IntVar(&c.PartitionEvents, "partition-events", 0,
		fmt.Sprintf("ledgerd migrate only: partition the events table by ledger into this many tables, %d to %d, every ledgerd stopped; 0: leave it",
			eventstore.PartitionsMin, eventstore.PartitionsMax))
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", getenv("LEDGER_ADVERTISE_ADDR"),
		"HOST:PORT other ledgerd nodes reach this one's gRPC at, to forward commands (env LEDGER_ADVERTISE_ADDR); empty: -grpc-addr's, 0.0.0.0 or :: replaced by the host name")
	roles := env("LEDGER_ROLES", "writer,projector,query")
	fs.StringVar(&roles, "roles", roles, "what this process does, a comma-separated set of writer, projector and query (env LEDGER_ROLES)")
	fs.StringVar(&c.NodeID, "node-id", getenv("LEDGER_NODE_ID"),
		"this process's name among the nodes sharing the database (env LEDGER_NODE_ID); empty: <host>:<gRPC port>")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	var err error
	if c.Roles, err = ParseRoles(roles); err != nil {
		return Config{}, err
	}
	if c.PartitionEvents != 0 && (c.PartitionEvents < eventstore.PartitionsMin || c.PartitionEvents > eventstore.PartitionsMax) {
		return Config{}, fmt.Errorf("-partition-events %d: want 0 or %d to %d", c.PartitionEvents, eventstore.PartitionsMin, eventstore.PartitionsMax)
	}
	if c.WritersMax < 1 || c.WritersMax > commands.LedgersMaxDefault {
		return Config{}, fmt.Errorf("-writers-max %d: want 1 to %d", c.WritersMax, commands.LedgersMaxDefault)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return Config{}, fmt.Errorf("-advertise-addr %q: want HOST:PORT: %w", c.AdvertiseAddr, err)
		}
	}
	if len(c.NodeID) > nodeIDMax {
		return Config{}, fmt.Errorf("-node-id: %d bytes, at most %d", len(c.NodeID), nodeIDMax)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, secret := range []struct {
		flag, env string
		into      *string
	}{{"postgres-url", "LEDGER_POSTGRES_URL", &c.PostgresURL}, {"nats-url", "LEDGER_NATS_URL", &c.NATSURL},
		{"postgres-projector-url", "LEDGER_POSTGRES_PROJECTOR_URL", &c.PostgresProjectorURL},
		{"postgres-read-url", "LEDGER_POSTGRES_READ_URL", &c.PostgresReadURL},
		{"postgres-keys-url", "LEDGER_POSTGRES_KEYS_URL", &c.PostgresKeysURL},
		{"postgres-replica-url", "LEDGER_POSTGRES_REPLICA_URL", &c.PostgresReplicaURL},
		{"admin-key", "LEDGER_ADMIN_KEY", &c.AdminKey}, {"", "LEDGER_ANCHOR_KEY", &c.AnchorKey},
		{"nats-password", "LEDGER_NATS_PASSWORD", &c.NATSAuth.Password}} {
		if !set[secret.flag] {
			*secret.into = getenv(secret.env)
		}
	}
	if envErr != nil {
		return Config{}, envErr
	}
	grpcAddr, httpAddr := grpcAddrService, httpAddrService
	if c.PostgresURL == "" && c.NATSURL == "" {
		grpcAddr, httpAddr = grpcAddrDev, httpAddrDev
	}
	c.GRPCAddr, c.HTTPAddr = cmp.Or(c.GRPCAddr, grpcAddr), cmp.Or(c.HTTPAddr, httpAddr)
	c.AuthDisabled = !auth
	if c.NATSListen != "" {
		if c.NATSURL != "" {
			return Config{}, errors.New("-nats-listen is for the embedded NATS: it cannot go with -nats-url")
		}
		if _, _, err := natsListenAddr(c.NATSListen); err != nil {
			return Config{}, err
		}
	}
	if err := c.NATSAuth.check(c.NATSURL); err != nil {
		return Config{}, err
	}
	if c.PostgresURL == "" && c.PostgresProjectorURL+c.PostgresReadURL+c.PostgresKeysURL+c.PostgresReplicaURL != "" {
		return Config{}, errors.New("-postgres-projector-url, -postgres-read-url, -postgres-keys-url and -postgres-replica-url need -postgres-url")
	}
	if c.ReplicaFallbackAfter <= 0 || c.ReplicaFallbackAfter > queries.WaitMax {
		return Config{}, fmt.Errorf("replica fallback after %s: want more than 0, at most %s", c.ReplicaFallbackAfter, queries.WaitMax)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, fmt.Errorf("-tls-cert and -tls-key: %w", errTLSPair)
	}
	if c.AdminKey != "" {
		if _, _, err := apikeys.Parse(c.AdminKey); err != nil {
			return Config{}, fmt.Errorf("-admin-key (LEDGER_ADMIN_KEY): %w", err)
		}
	}
	if c.LedgerIdle <= 0 || c.LedgerIdle > ledgerIdleMax {
		return Config{}, fmt.Errorf("ledger idle %s: want more than 0, at most %s", c.LedgerIdle, ledgerIdleMax)
	}
	if c.SnapshotEvery < 0 {
		return Config{}, fmt.Errorf("snapshot every %d events: want 0 (off) or more", c.SnapshotEvery)
	}
	if c.ProjectionLinger < 0 || c.ProjectionLinger > projectionLingerMax {
		return Config{}, fmt.Errorf("projection linger %s: want 0 to %s", c.ProjectionLinger, projectionLingerMax)
	}
	if c.Webhooks.MaxAge <= 0 {
		return Config{}, fmt.Errorf("webhook max age %s: want more than 0", c.Webhooks.MaxAge)
	}
	if c.Webhooks.EndpointRate < 1 || c.Webhooks.EndpointRate > webhookEndpointRateMax {
		return Config{}, fmt.Errorf("webhook endpoint rate %d: want 1 to %d", c.Webhooks.EndpointRate, webhookEndpointRateMax)
	}
	if c.Webhooks.EndpointConcurrency < 1 || c.Webhooks.EndpointConcurrency > webhookEndpointConcurrencyMax {
		return Config{}, fmt.Errorf("webhook endpoint concurrency %d: want 1 to %d",
			c.Webhooks.EndpointConcurrency, webhookEndpointConcurrencyMax)
	}
	if c.Webhooks.PayloadMax < webhookPayloadMin || c.Webhooks.PayloadMax > webhookPayloadMax {
		return Config{}, fmt.Errorf("webhook payload max %d: want %d to %d", c.Webhooks.PayloadMax, webhookPayloadMin, webhookPayloadMax)
	}
	if c.AnchorEvery < 0 || c.AnchorEvery > anchorEveryMax {
		return Config{}, fmt.Errorf("anchor every %s: want 0 (when asked only) to %s", c.AnchorEvery, anchorEveryMax)
	}
	if c.AnchorKeyFile != "" && c.AnchorKey != "" {
		return Config{}, errors.New("-anchor-key-file and LEDGER_ANCHOR_KEY: give one key, not two")
	}
	if c.StreamReplicas < 0 || c.StreamReplicas > streamReplicasMax {
		return Config{}, fmt.Errorf("stream replicas %d: want 0 (by the cluster) to %d", c.StreamReplicas, streamReplicasMax)
	}
	d, err := time.ParseDuration(maxAge)
	if err != nil {
		return Config{}, fmt.Errorf("stream max age %q: %w", maxAge, err)
	}
	// JetStream refuses a negative age, and one under the stream's
	// duplicate window: every ledger's stream would then fail to be made.
	if d < 0 || d > 0 && d < natsbus.DuplicateWindow {
		return Config{}, fmt.Errorf("stream max age %s: want 0 (no limit) or at least %s, the stream's duplicate window", d, natsbus.DuplicateWindow)
	}
	c.StreamMaxAge = d
	if err := c.checkBounds(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// checkBounds refuses the values the flags' parsing lets through that
// would make ledgerd misbehave rather than stop: checked after the
// environment was read, so that a URL given there counts.
func (c *Config) checkBounds() error {
	switch {
	case c.PartitionEvents != 0 && c.PostgresURL == "":
		return errors.New("-partition-events needs -postgres-url (or LEDGER_POSTGRES_URL): the embedded PostgreSQL is one machine's")
	case c.EffectivePastMax < 0:
		return fmt.Errorf("-effective-past-max %s: want 0 (any past) or more", c.EffectivePastMax)
	case c.EffectiveFutureMax < 0:
		return fmt.Errorf("-effective-future-max %s: want 0 or more", c.EffectiveFutureMax)
	case c.PostgresConnsMax < 1:
		return fmt.Errorf("-postgres-conns-max %d: want 1 or more", c.PostgresConnsMax)
	case c.ConnsMax < 0:
		return fmt.Errorf("-conns-max %d: want 0 (%d) or more", c.ConnsMax, ConnsMaxDefault)
	}
	return nil
}

// natsListenAddr splits -nats-listen's HOST:PORT.
func natsListenAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("-nats-listen %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("-nats-listen %q: want a port from 1 to 65535", addr)
	}
	return host, p, nil
}
