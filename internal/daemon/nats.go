package daemon

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerd/ledger/adapters/natsbus"
)

// natsReconnectWait is the pause between attempts to reach NATS, at start-up
// (NATS may come after ledgerd) and after a disconnection. The relay and the
// projections back off on their own (up to 5 s) while it is down.
const natsReconnectWait = 250 * time.Millisecond

// openNATS connects to NATS without waiting for it: commands and queries need
// only PostgreSQL, so ledgerd starts and serves while NATS is down, and the
// relay and the projections, which retry with back-off, catch up once the
// connection is made (ledger_nats_connected and /readyz say which).
//
// Errors: a bad URL; the embedded server's failure to start.
func (m *Main) openNATS() error {
	url := m.Config.NATSURL
	var inProcess []nats.Option
	if url == "" {
		opts := natsbus.EmbeddedOptions{
			StoreDir:  filepath.Join(m.Config.DataDir, "nats"),
			InProcess: m.Config.NATSListen == "",
			Logf:      func(f string, a ...any) { m.Logger.Debug(fmt.Sprintf(f, a...)) },
		}
		if !opts.InProcess {
			host, port, err := natsListenAddr(m.Config.NATSListen)
			if err != nil {
				return err
			}
			opts.Host, opts.Port = host, port
		}
		e, err := natsbus.StartEmbedded(opts)
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		m.nats, url = e, e.ClientURL()
		if opts.InProcess {
			m.Logger.Info("embedded NATS: in-process only (no port; -nats-listen opens one)")
		} else {
			m.Logger.Warn("embedded NATS listens without credentials: whoever reaches it reads every ledger's events",
				"addr", url)
		}
		inProcess = append(inProcess, e.InProcessOption())
	}
	auth, err := m.Config.NATSAuth.options()
	if err != nil {
		return err
	}
	opts := append(inProcess, auth...)
	opts = append(opts, nats.Name("ledgerd"), nats.MaxReconnects(-1), nats.ReconnectWait(natsReconnectWait),
		nats.ConnectHandler(func(*nats.Conn) { m.Logger.Info("NATS connected: the relay and projections resume") }),
		nats.ReconnectHandler(func(*nats.Conn) { m.Logger.Info("NATS reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			m.Logger.Warn("NATS disconnected: commands go on, the relay and projections wait", "err", err)
		}))
	// A first attempt tells a refusal that waiting cannot fix (credentials,
	// TLS) from a server that is not there yet, which ledgerd waits for.
	nc, err := nats.Connect(url, opts...)
	switch {
	case err != nil && natsRefusedForGood(err):
		return fmt.Errorf("connect to NATS at %s: %w (see -nats-creds, -nats-user, -nats-nkey-seed, -nats-tls-*)", redactURLs(url), err)
	case err != nil:
		nc, err = nats.Connect(url, append(opts, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURLs(url), err)
	}
	m.nc = nc
	if !nc.IsConnected() {
		m.Logger.Warn("NATS unreachable at start: serving commands and queries; the relay and projections wait for it")
	}
	if m.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

// EmbeddedNATSURL is the address the embedded NATS listens on; "" when it
// listens in-process only (the default) or NATS is external.
func (m *Main) EmbeddedNATSURL() string {
	if m.nats == nil {
		return ""
	}
	return m.nats.ClientURL()
}

// redactURLs replaces the user information (user and password, or a token)
// of each URL in a comma-separated NATS server list by "***": an error or a
// log line must not carry a credential. A part that does not parse as a URL
// is replaced whole, since it may hold one.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil:
			parts[i] = "***"
		case u.User != nil:
			u.User = nil
			parts[i] = strings.Replace(u.String(), "//", "//***@", 1)
		}
	}
	return strings.Join(parts, ",")
}

// natsConnectedGauge is ledger_nats_connected: 1 while the NATS connection
// is up, 0 while the relay and the projections wait for it.
func (m *Main) natsConnectedGauge() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledger_nats_connected",
		Help: "1 while ledgerd is connected to NATS; 0 while the relay and projections wait for it (commands go on).",
	}, func() float64 {
		if m.nc.IsConnected() {
			return 1
		}
		return 0
	})
}

// natsWaiting describes, for /readyz, what waits while NATS is not
// connected; "" when it is.
func (m *Main) natsWaiting() string {
	if m.nc.IsConnected() {
		return ""
	}
	return "nats: " + m.nc.Status().String() + ": the relay and projections wait for it; commands and queries are served"
}

// streamReplicasMax bounds -stream-replicas: JetStream's own bound.
const streamReplicasMax = 5

// clusterReplicas is how many servers hold a stream on a cluster: three
// survive the loss of any one with a majority left to agree.
const clusterReplicas = 3

// streamReplicas is how many NATS servers hold a ledger's stream created
// now: Config.StreamReplicas, or, when 0, 3 when the server ledgerd is
// connected to is in a cluster whose servers it knows of number three or
// more (the cluster tells its clients its members' addresses), else 1.
func (m *Main) streamReplicas() int {
	if m.Config.StreamReplicas > 0 {
		return m.Config.StreamReplicas
	}
	if m.nc != nil && m.nc.ConnectedClusterName() != "" && len(m.nc.Servers()) >= clusterReplicas {
		return clusterReplicas
	}
	return 1
}
