package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// clockTicks is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux architecture Go supports (the kernel exports it as such
// whatever its own HZ).
const clockTicks = 100

// CPUMeter measures the CPU time a benchmark costs on both sides of one
// PostgreSQL session: this process (every goroutine, GC included) and the
// session's backend process, read from /proc. It is a measuring tool for
// benchmarks (the cost model in docs/perf.md), never a test assertion.
// The backend must run on this machine; else only the Go side is reported.
type CPUMeter struct {
	pid            int // the backend's; 0 when it cannot be read
	goAt, pgAt     time.Duration
	goCost, pgCost time.Duration
}

// Session is a PostgreSQL session: a *pgx.Conn, or a pool of one connection.
type Session interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StartCPU starts measuring this process and the backend of session.
func StartCPU(tb testing.TB, ctx context.Context, session Session) *CPUMeter {
	tb.Helper()
	m := &CPUMeter{}
	var pid int32
	if err := session.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		tb.Fatalf("backend pid: %v", err)
	}
	if _, err := procCPU(int(pid)); err == nil {
		m.pid = int(pid)
	} else {
		tb.Logf("PostgreSQL backend CPU not measured: %v", err)
	}
	m.Resume()
	return m
}

// Pause stops counting (around a benchmark's setup, as b.StopTimer). A nil
// meter measures nothing.
func (m *CPUMeter) Pause() {
	if m == nil {
		return
	}
	goNow, pgNow := m.read()
	m.goCost += goNow - m.goAt
	m.pgCost += pgNow - m.pgAt
}

// Resume counts again after Pause.
func (m *CPUMeter) Resume() {
	if m != nil {
		m.goAt, m.pgAt = m.read()
	}
}

func (m *CPUMeter) read() (goCPU, pgCPU time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		goCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if m.pid != 0 {
		pgCPU, _ = procCPU(m.pid)
	}
	return goCPU, pgCPU
}

// Report pauses the meter and reports the CPU µs per unit (e.g. "event")
// of this process (go-µs/unit) and of the backend (pg-µs/unit) over n units.
func (m *CPUMeter) Report(b *testing.B, n int, unit string) {
	m.Pause()
	if m == nil || n <= 0 {
		return
	}
	b.ReportMetric(float64(m.goCost.Microseconds())/float64(n), "go-µs/"+unit)
	if m.pid != 0 {
		b.ReportMetric(float64(m.pgCost.Microseconds())/float64(n), "pg-µs/"+unit)
	}
}

// procCPU is a process's user plus system time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: the
	// fields counted from 3 start after its last ')'.
	s := string(raw)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[end+1:])
	// utime and stime are fields 14 and 15, so 11 and 12 here (from 3).
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
