package daemon

import (
	"fmt"
	"path/filepath"
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
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	m.nc = nc
	if m.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}
