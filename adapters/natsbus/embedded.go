package natsbus

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Errors returned by StartEmbedded.
var (
	// ErrEmbeddedOptions means EmbeddedOptions failed validation.
	ErrEmbeddedOptions = errors.New("invalid embedded nats options")
	// ErrEmbeddedNotReady means the embedded server did not accept
	// connections, or did not enable JetStream, within embeddedReadyTimeout.
	ErrEmbeddedNotReady = errors.New("embedded nats server not ready")
)

const (
	// embeddedReadyTimeout bounds the wait for the server to listen.
	embeddedReadyTimeout = 10 * time.Second
	// EmbeddedMaxMemoryDefault bounds JetStream's memory storage when
	// EmbeddedOptions.MaxMemoryBytes is 0; the ledger's streams are on disk.
	EmbeddedMaxMemoryDefault = 256 << 20
)

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// StoreDir holds JetStream's file store; required, so that two servers
	// never share the server's default temp location. Data in it survives
	// a restart on the same StoreDir.
	StoreDir string
	// InProcess runs the server without a TCP listener: only this process
	// reaches it, through InProcessOption (Host and Port are ignored). The
	// embedded server has no credentials, so this is ledgerd's default: an
	// open port would let anyone on the machine read every ledger's events
	// and publish forged ones.
	InProcess bool
	// Host to listen on; "" means 127.0.0.1.
	Host string
	// Port to listen on; 0 or -1 means a random free port (ClientURL tells
	// which), so tests never collide with a server on 4222.
	Port int
	// MaxMemoryBytes bounds JetStream memory storage; 0 means
	// EmbeddedMaxMemoryDefault.
	MaxMemoryBytes int64
	// MaxStoreBytes bounds JetStream file storage; 0 means the server's
	// default, a share of the free disk.
	MaxStoreBytes int64
	// MaxPayload is the server's max_payload; 0 means MaxPayloadMin, what
	// the relay's largest frame takes (NATS's own default, 1 MiB, refuses
	// it). Less is for tests of a server that refuses large frames.
	MaxPayload int32
	// Logf, if set, receives the server's notices, warnings and errors.
	Logf func(format string, args ...any)
	// Cluster, when set, makes the server one node of a JetStream cluster.
	Cluster *EmbeddedCluster
}

// EmbeddedCluster is an embedded server's place in a cluster: streams
// created with Replicas 3 on three such servers survive the loss of one.
type EmbeddedCluster struct {
	// Name is the cluster's, the same on every node.
	Name string
	// ServerName is this node's, unique in the cluster.
	ServerName string
	// Host and Port are where this node listens for routes.
	Host string
	Port int
	// Routes are the other nodes' route URLs (nats-route://host:port).
	Routes []string
}

// Embedded is a nats-server with JetStream running in this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts an in-process nats-server with JetStream on disk
// and waits until it accepts connections.
//
// Errors: ErrEmbeddedOptions, ErrEmbeddedNotReady (with the server's last
// error when it logged one), or a wrapped server configuration error.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.StoreDir == "" {
		return nil, fmt.Errorf("store dir is empty: %w", ErrEmbeddedOptions)
	}
	if opts.Port < -1 || opts.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range -1..65535: %w", opts.Port, ErrEmbeddedOptions)
	}
	if opts.MaxMemoryBytes < 0 || opts.MaxStoreBytes < 0 {
		return nil, fmt.Errorf("negative jetstream limit: %w", ErrEmbeddedOptions)
	}
	if opts.MaxPayload < 0 {
		return nil, fmt.Errorf("negative max payload: %w", ErrEmbeddedOptions)
	}
	sopts := &server.Options{
		Host:               opts.Host,
		Port:               opts.Port,
		DontListen:         opts.InProcess,
		JetStream:          true,
		StoreDir:           opts.StoreDir,
		JetStreamMaxMemory: opts.MaxMemoryBytes,
		JetStreamMaxStore:  opts.MaxStoreBytes,
		MaxPayload:         cmp.Or(opts.MaxPayload, int32(MaxPayloadMin)),
		// The host process owns signals; the server must not exit it.
		NoSigs: true,
		NoLog:  opts.Logf == nil,
	}
	if sopts.Host == "" {
		sopts.Host = "127.0.0.1"
	}
	if sopts.Port == 0 {
		sopts.Port = server.RANDOM_PORT // The server reads 0 as 4222.
	}
	if sopts.JetStreamMaxMemory == 0 {
		sopts.JetStreamMaxMemory = EmbeddedMaxMemoryDefault
	}
	if c := opts.Cluster; c != nil {
		routes := make([]*url.URL, 0, len(c.Routes))
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w: %w", r, err, ErrEmbeddedOptions)
			}
			routes = append(routes, u)
		}
		sopts.ServerName = c.ServerName
		sopts.Cluster = server.ClusterOpts{Name: c.Name, Host: cmp.Or(c.Host, "127.0.0.1"), Port: c.Port}
		sopts.Routes = routes
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("new embedded nats server: %w", err)
	}
	// Always install a logger: the server's default one exits the process
	// on Fatalf (e.g. JetStream failing to start), and we want the error.
	logger := &serverLogger{logf: opts.Logf}
	srv.SetLogger(logger, false, false)
	// Start returns once JetStream is up or has failed; a failure is only
	// visible as a Fatalf (JetStreamEnabled may still say true) and leaves
	// the server without a listener, so check it before waiting for one.
	srv.Start()
	if fatal := logger.fatal(); fatal != "" {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats in %s: %s: %w", opts.StoreDir, fatal, ErrEmbeddedNotReady)
	}
	if !srv.ReadyForConnections(embeddedReadyTimeout) || !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats in %s: not ready after %v (last error: %q): %w",
			opts.StoreDir, embeddedReadyTimeout, logger.lastError(), ErrEmbeddedNotReady)
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL returns the nats:// URL clients connect to; "" for a server
// that listens in-process only.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// InProcessOption makes a nats.Connect reach this server in-process, without
// a socket, whether it listens or not.
func (e *Embedded) InProcessOption() nats.Option { return nats.InProcessServer(e.srv) }

// Shutdown stops the server and waits until it has stopped, so that its
// store can be reopened or removed. Calling it again does nothing.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger adapts Logf to the server's Logger and remembers the first
// fatal and the last error, which StartEmbedded reports when the server
// fails to come up.
type serverLogger struct {
	logf func(format string, args ...any)

	mu         sync.Mutex
	firstFatal string
	last       string
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log("nats: "+format, v...) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log("nats: warning: "+format, v...) }
func (l *serverLogger) Debugf(string, ...any)           {}
func (l *serverLogger) Tracef(string, ...any)           {}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.remember(format, v...)
	l.log("nats: error: "+format, v...)
}

// Fatalf must not exit: the server is a guest in this process.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := l.remember(format, v...)
	l.mu.Lock()
	if l.firstFatal == "" {
		l.firstFatal = msg
	}
	l.mu.Unlock()
	l.log("nats: fatal: "+format, v...)
}

func (l *serverLogger) log(format string, v ...any) {
	if l.logf != nil {
		l.logf(format, v...)
	}
}

// lastErrorBytesMax bounds the remembered error message.
const lastErrorBytesMax = 1 << 10

func (l *serverLogger) remember(format string, v ...any) string {
	msg := fmt.Sprintf(format, v...)
	if len(msg) > lastErrorBytesMax {
		msg = msg[:lastErrorBytesMax]
	}
	l.mu.Lock()
	l.last = msg
	l.mu.Unlock()
	return msg
}

func (l *serverLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstFatal
}

func (l *serverLogger) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
