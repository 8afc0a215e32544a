package ctl

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newPlainProgress(unit string) (*progress, *bytes.Buffer, *fakeClock) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	return &progress{w: &out, unit: unit, now: clock.now}, &out, clock
}

// TestProgressPlainLines: off a terminal, a line at each tenth of the work,
// with the rate since the phase began and the time left.
func TestProgressPlainLines(t *testing.T) {
	p, out, clock := newPlainProgress("events")
	p.update("sent", 0, 1000)
	clock.t = clock.t.Add(2 * time.Second)
	p.update("sent", 50, 1000) // within the first tenth: no line
	clock.t = clock.t.Add(2 * time.Second)
	p.update("sent", 250, 1000) // 250 events in 4 s
	clock.t = clock.t.Add(4 * time.Second)
	p.update("sent", 1000, 1000) // 1000 in 8 s
	p.finish()
	want := "sent 250 of 1000 events (25%), 62 events/s, eta 12s\n" +
		"sent 1000 of 1000 events (100%), 125 events/s\n"
	if got := out.String(); got != want {
		t.Errorf("plain lines:\n%s\nwant:\n%s", got, want)
	}
}

// TestProgressRateFromThePhaseStart: the rate counts the work from the
// phase's first report, not from the first report that moved (which said
// "0 events/s" of a rebuild done within one tick), and a phase that never
// moved says no rate rather than a false 0.
func TestProgressRateFromThePhaseStart(t *testing.T) {
	p, out, clock := newPlainProgress("events")
	p.update("rebuild", 500, 2000) // resumed at 500: not counted
	clock.t = clock.t.Add(3 * time.Second)
	p.update("rebuild", 2000, 2000)
	p.update("verify", 7, 0) // a phase of unknown size, reported once
	p.finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || lines[0] != "rebuild 2000 of 2000 events (100%), 500 events/s" {
		t.Errorf("lines %q, want only the rebuild's, at 1500 events in 3 s", lines)
	}
}

// TestProgressUnknownTotal: work of unknown size gets a line every
// progressPlainEvery, and its last at the end.
func TestProgressUnknownTotal(t *testing.T) {
	p, out, clock := newPlainProgress("")
	p.update("log", 0, 0)
	clock.t = clock.t.Add(progressPlainEvery / 2)
	p.update("log", 100, 0)
	clock.t = clock.t.Add(progressPlainEvery / 2)
	p.update("log", 400, 0)
	clock.t = clock.t.Add(time.Second)
	p.update("log", 420, 0)
	p.finish()
	want := "log 400, 40/s\nlog 420, 38/s\n"
	if got := out.String(); got != want {
		t.Errorf("lines:\n%s\nwant:\n%s", got, want)
	}
}

// TestProgressTerminal: on a terminal the line is redrawn in place, at most
// every progressRedrawEvery, and closed with a newline at the end.
func TestProgressTerminal(t *testing.T) {
	p, out, clock := newPlainProgress("events")
	p.tty = true
	p.update("export", 0, 100)
	clock.t = clock.t.Add(progressRedrawEvery / 2)
	p.update("export", 10, 100) // too soon: not drawn
	clock.t = clock.t.Add(progressRedrawEvery)
	p.update("export", 30, 100)
	clock.t = clock.t.Add(progressRedrawEvery)
	p.update("export", 100, 100)
	p.finish()
	got := out.String()
	if n := strings.Count(got, "\r"); n != 3 {
		t.Errorf("%d redraws, want 3 (30, 100, and the end):\n%q", n, got)
	}
	if !strings.Contains(got, "[#########.....................]  30%  30/100  200 events/s, eta 0s") || !strings.HasSuffix(got, "\n") {
		t.Errorf("terminal output %q: want a bar with rate and eta, ending with a newline", got)
	}
}

// TestProgressQuietForShortWork: plain lines start quietFor into a phase;
// a phase shorter than that prints none, not even its last.
func TestProgressQuietForShortWork(t *testing.T) {
	p, out, clock := newPlainProgress("")
	p.quietFor = 2 * time.Second
	p.update("statements", 0, 8)
	for i := range uint64(8) {
		clock.t = clock.t.Add(100 * time.Millisecond)
		p.update("statements", i+1, 8)
	}
	p.update("log", 0, 100)
	clock.t = clock.t.Add(time.Second)
	p.update("log", 50, 100) // 1 s in: quiet
	clock.t = clock.t.Add(2 * time.Second)
	p.update("log", 60, 100) // 3 s in: its tenth is out
	p.finish()
	if got, want := out.String(), "log 60 of 100 (60%), 20/s, eta 2s\n"; got != want {
		t.Errorf("lines:\n%s\nwant:\n%s", got, want)
	}
}
