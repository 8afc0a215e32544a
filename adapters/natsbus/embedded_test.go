package natsbus_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/internal/testenv"
)

// startEmbedded starts a server on dir and shuts it down at cleanup.
func startEmbedded(t *testing.T, dir string) *natsbus.Embedded {
	t.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: dir, Logf: t.Logf})
	testenv.NoError(t, err)
	t.Cleanup(e.Shutdown)
	return e
}

func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return js
}

func TestEmbeddedKeepsMessagesAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stream := testenv.Name(t)
	subject := stream + ".events"

	e := startEmbedded(t, dir)
	js := connectJS(t, e.ClientURL())
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     stream,
		Subjects: []string{subject},
		Storage:  jetstream.FileStorage,
	})
	testenv.NoError(t, err)
	ack, err := js.Publish(t.Context(), subject, []byte("kept"))
	testenv.NoError(t, err)
	if ack.Sequence != 1 {
		t.Fatalf("first publish got sequence %d, want 1", ack.Sequence)
	}
	readOne(t, js, stream, "kept")
	e.Shutdown()

	e = startEmbedded(t, dir)
	js = connectJS(t, e.ClientURL())
	readOne(t, js, stream, "kept")
}

// readOne consumes the stream from the start with an ephemeral consumer
// and checks its first message.
func readOne(t *testing.T, js jetstream.JetStream, stream, want string) {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), stream, jetstream.OrderedConsumerConfig{})
	testenv.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	testenv.NoError(t, err)
	if got := string(msg.Data()); got != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func TestStartEmbeddedInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts natsbus.EmbeddedOptions
	}{
		{"no store dir", natsbus.EmbeddedOptions{}},
		{"port too low", natsbus.EmbeddedOptions{StoreDir: t.TempDir(), Port: -2}},
		{"port too high", natsbus.EmbeddedOptions{StoreDir: t.TempDir(), Port: 65536}},
		{"negative memory", natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxMemoryBytes: -1}},
		{"negative max payload", natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := natsbus.StartEmbedded(tc.opts)
			if !errors.Is(err, natsbus.ErrEmbeddedOptions) {
				t.Fatalf("got %v, want ErrEmbeddedOptions", err)
			}
		})
	}
}

// TestStartEmbeddedBadStore checks a JetStream failure is an error, not
// the server exiting the process.
func TestStartEmbeddedBadStore(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	testenv.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: file, Logf: t.Logf})
	if !errors.Is(err, natsbus.ErrEmbeddedNotReady) {
		t.Fatalf("got %v, want ErrEmbeddedNotReady", err)
	}
	t.Logf("error: %v", err)
}

// TestEmbeddedInProcessHasNoListener: the server ledgerd runs by default has
// no TCP port for anyone to reach; this process still uses JetStream on it.
func TestEmbeddedInProcessHasNoListener(t *testing.T) {
	t.Parallel()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), InProcess: true, Logf: t.Logf})
	testenv.NoError(t, err)
	t.Cleanup(e.Shutdown)
	if url := e.ClientURL(); url != "" {
		t.Fatalf("an in-process server has the client URL %q, want none", url)
	}
	nc, err := nats.Connect("", e.InProcessOption())
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	stream := testenv.Name(t)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".x"}})
	testenv.NoError(t, err)
	_, err = js.Publish(t.Context(), stream+".x", []byte("in process"))
	testenv.NoError(t, err)
	readOne(t, js, stream, "in process")

	// The same options with a listener do listen: the test above can fail.
	l, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), Logf: t.Logf})
	testenv.NoError(t, err)
	t.Cleanup(l.Shutdown)
	if l.ClientURL() == "" {
		t.Fatal("a listening server has no client URL")
	}
}

// TestEmbeddedMaxPayloadTakesTheLargestFrame: the embedded server (dev mode,
// the test harness) allows MaxPayloadMin, what the relay's largest frame
// takes, in-process and listening, unless told less.
func TestEmbeddedMaxPayloadTakesTheLargestFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts natsbus.EmbeddedOptions
		want int64
	}{
		{"in process", natsbus.EmbeddedOptions{InProcess: true}, int64(natsbus.MaxPayloadMin)},
		{"listening", natsbus.EmbeddedOptions{}, int64(natsbus.MaxPayloadMin)},
		{"told less", natsbus.EmbeddedOptions{MaxPayload: 1 << 20}, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.StoreDir = t.TempDir()
			e, err := natsbus.StartEmbedded(tc.opts)
			testenv.NoError(t, err)
			t.Cleanup(e.Shutdown)
			nc, err := nats.Connect(e.ClientURL(), e.InProcessOption())
			testenv.NoError(t, err)
			t.Cleanup(nc.Close)
			if got := nc.MaxPayload(); got != tc.want {
				t.Fatalf("max_payload %d, want %d", got, tc.want)
			}
		})
	}
}
