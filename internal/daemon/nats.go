package daemon

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (m *Main) openNATS() error {
	url := m.Config.NATSURL
	if url == "" {
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{
			StoreDir: filepath.Join(m.Config.DataDir, "nats"),
			Logf:     func(f string, a ...any) { m.Logger.Debug(fmt.Sprintf(f, a...)) },
		})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		m.nats, url = e, e.ClientURL()
	}
	nc, err := nats.Connect(url, nats.Name("ledgerd"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURLs(url), err)
	}
	m.nc = nc
	if m.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
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
