package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
)

// Long work (import, export, rebuild, verify, replay) reports its progress:
// on a terminal, one line on standard error redrawn in place, with a bar,
// the rate and the time left; elsewhere (a pipe, a file, a CI log, a test)
// a plain line at each tenth of the work, so a log shows that it moves
// without filling up. Work that ends within progressQuietFor prints no plain
// line: a verify of a small ledger stays as quiet as it always was.
const (
	// progressRedrawEvery bounds the redraws on a terminal.
	progressRedrawEvery = 100 * time.Millisecond
	// progressPlainEvery spaces the plain lines of work whose total is
	// unknown (no tenths to count).
	progressPlainEvery = 10 * time.Second
	// progressQuietFor is how long a phase runs before its plain lines
	// start (newProgress's default).
	progressQuietFor = 2 * time.Second
	progressWidth    = 30
)

// progress reports one piece of long work, phase after phase. It is safe
// for concurrent use (Verify reports from its readers).
type progress struct {
	mu sync.Mutex
	w  io.Writer
	// tty: w is a terminal, redrawn in place; else plain lines.
	tty  bool
	unit string // what is counted: "events", "lines"; "" for a mix
	now  func() time.Time
	// quietFor: plain lines start this long into a phase, and a phase
	// shorter than it prints none.
	quietFor time.Duration

	phase string
	// The rate is measured from the phase's first report (base at since):
	// work done before it is not counted, and the time before it neither.
	base     uint64
	since    time.Time
	last     time.Time // of the last line or redraw
	tenth    uint64    // of the last plain line
	lineDone uint64    // done at the last plain line (base before one)
	done     uint64
	total    uint64
}

// newProgress reports on standard error when it is a terminal; else as
// plain lines to plain (the command's choice: standard error, or its
// output when the lines have always been part of it).
func (c *client) newProgress(unit string, plain io.Writer) *progress {
	if f, ok := c.errOut.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &progress{w: f, tty: true, unit: unit, now: time.Now}
	}
	return &progress{w: plain, unit: unit, now: time.Now, quietFor: progressQuietFor}
}

// update reports that the phase has done of total (0: unknown). The first
// report of a phase is its start: report done 0 there when the work starts
// from nothing, so the rate counts all of it.
func (p *progress) update(phase string, done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if phase != p.phase {
		p.endPhase()
		p.phase, p.base, p.since, p.last, p.tenth, p.lineDone = phase, done, now, now, tenthOf(done, total), done
		p.done, p.total = done, total
		return
	}
	p.done, p.total = done, total
	if p.tty {
		if now.Sub(p.last) >= progressRedrawEvery || (total > 0 && done >= total) {
			p.redraw(now)
		}
		return
	}
	if now.Sub(p.since) < p.quietFor {
		return
	}
	switch t := tenthOf(done, total); {
	case total > 0 && t > p.tenth:
		p.tenth = t
		p.line(now)
	case total == 0 && now.Sub(p.last) >= progressPlainEvery:
		p.line(now)
	}
}

// finish ends the last phase: its final line, and the terminal's line
// closed so that what follows starts on a line of its own.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endPhase()
	p.phase = ""
}

func (p *progress) endPhase() {
	if p.phase == "" {
		return
	}
	now := p.now()
	if p.tty {
		p.redraw(now)
		fmt.Fprintln(p.w)
		return
	}
	if p.done != p.lineDone && now.Sub(p.since) >= p.quietFor {
		p.line(now)
	}
}

func tenthOf(done, total uint64) uint64 {
	if total == 0 {
		return 0
	}
	return min(done, total) * 10 / total
}

// rate is the work per second since the phase's first report; ok false
// until there is something to measure.
func (p *progress) rate(now time.Time) (float64, bool) {
	secs := now.Sub(p.since).Seconds()
	if secs <= 0 || p.done <= p.base {
		return 0, false
	}
	return float64(p.done-p.base) / secs, true
}

// status is the rate and the time left, or "" before there is a rate.
func (p *progress) status(now time.Time) string {
	r, ok := p.rate(now)
	if !ok {
		return ""
	}
	unit := "/s"
	if p.unit != "" {
		unit = " " + p.unit + "/s"
	}
	s := fmt.Sprintf("%.0f%s", r, unit)
	if p.total > p.done {
		eta := time.Duration(float64(p.total-p.done) / r * float64(time.Second))
		s += ", eta " + eta.Round(time.Second).String()
	}
	return s
}

// line prints a plain line: "sent 1600 of 16000 events (10%), 812 events/s,
// eta 18s".
func (p *progress) line(now time.Time) {
	p.last, p.lineDone = now, p.done
	unit := ""
	if p.unit != "" {
		unit = " " + p.unit
	}
	s := fmt.Sprintf("%s %d%s", p.phase, p.done, unit)
	if p.total > 0 {
		s = fmt.Sprintf("%s %d of %d%s (%d%%)", p.phase, p.done, p.total, unit, min(p.done, p.total)*100/p.total)
	}
	if st := p.status(now); st != "" {
		s += ", " + st
	}
	fmt.Fprintln(p.w, s)
}

// redraw draws the terminal's line in place.
func (p *progress) redraw(now time.Time) {
	p.last = now
	s := fmt.Sprintf("%-14s %d", p.phase, p.done)
	if p.total > 0 {
		filled := int(min(p.done, p.total) * progressWidth / p.total)
		s = fmt.Sprintf("%-14s [%s%s] %3d%%  %d/%d", p.phase, strings.Repeat("#", filled),
			strings.Repeat(".", progressWidth-filled), min(p.done, p.total)*100/p.total, p.done, p.total)
	}
	if st := p.status(now); st != "" {
		s += "  " + st
	}
	// \033[K clears what a longer line before left.
	fmt.Fprintf(p.w, "\r%s\033[K", s)
}

// progressLog is a Log whose reads report how far they are: Replay has no
// progress of its own, and reads the log once, from 1 to total.
type progressLog struct {
	audit.Log
	p     *progress
	phase string
	total uint64
}

// Read reports the last position read after each page.
func (l *progressLog) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	l.p.update(l.phase, 0, l.total)
	return l.Log.Read(ctx, from, to, func(recs []eventstore.Record) error {
		if len(recs) > 0 {
			l.p.update(l.phase, recs[len(recs)-1].Position, l.total)
		}
		return fn(recs)
	})
}
