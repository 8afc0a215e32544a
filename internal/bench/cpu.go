package bench

import (
	"fmt"
	"time"
)

// Names of the measured processes, as reported.
const (
	procLedgerd  = "ledgerd"
	procPostgres = "postgres"
	procNATS     = "nats"
	procBench    = "ledgerbench"
)

// CPUMeaning says what the CPU figures are; the report carries it.
const CPUMeaning = "CPU time (user+system) read from /proc at the start and the end of a window, divided by the " +
	"transfers of the window. ledgerd: its process (threads included; an embedded NATS server runs inside it and is " +
	"counted there). postgres: the postmaster's own time and that of the children it waited for (cutime+cstime), plus " +
	"every live child's, so backends that exited within the window count, and so do autovacuum, the checkpointer and " +
	"the WAL writer. nats: an external nats-server, when -nats-pid is given. ledgerbench: itself (getrusage), readers " +
	"and lag sampler included. The processes must run on this machine; the machine's other load is not counted."

// CPUReport is the CPU time each measured process spent per transfer.
type CPUReport struct {
	ClockTicksPerSecond int64  `json:"clock_ticks_per_second"`
	ClockTicksSource    string `json:"clock_ticks_source"`
	// Acked is the window from the first transfer sent to the last ack.
	Acked *CPUWindow `json:"acked,omitempty"`
	// Current is the window from the first transfer sent until every
	// projection had applied the last acknowledged one: every read model
	// current. Nil when they did not catch up.
	Current *CPUWindow `json:"current,omitempty"`
	// Error says why a window is missing (a process ended, /proc unreadable).
	Error   string `json:"error,omitempty"`
	Meaning string `json:"meaning"`
}

// CPUWindow is the CPU time spent by each process over one window.
type CPUWindow struct {
	Seconds   float64      `json:"seconds"`
	Transfers int64        `json:"transfers"`
	Processes []ProcessCPU `json:"processes"`
	// TotalUsPerTransfer sums the processes' UsPerTransfer.
	TotalUsPerTransfer float64 `json:"total_us_per_transfer"`
}

// ProcessCPU is one process's CPU time over a window.
type ProcessCPU struct {
	Name string `json:"name"`
	// PID is 0 for ledgerbench itself.
	PID           int     `json:"pid"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	UsPerTransfer float64 `json:"us_per_transfer"`
	// Cores is CPUSeconds over the window's seconds: 1.0 is one core busy.
	Cores float64 `json:"cores"`
}

// Process returns the named process's figures, or false.
func (w *CPUWindow) Process(name string) (ProcessCPU, bool) {
	if w == nil {
		return ProcessCPU{}, false
	}
	for _, p := range w.Processes {
		if p.Name == name {
			return p, true
		}
	}
	return ProcessCPU{}, false
}

// measuredProcess is one process the meter reads; pid 0 is ledgerbench.
type measuredProcess struct {
	name string
	pid  int
}

// cpuMeter reads the CPU time of ledgerd, PostgreSQL, NATS and ledgerbench.
type cpuMeter struct {
	// root is where /proc is mounted; tests keep "/proc".
	root        string
	ticks       int64
	ticksSource string
	procs       []measuredProcess
	now         func() time.Time
}

// cpuSample is the CPU time of each of the meter's processes at one time.
type cpuSample struct {
	at  time.Time
	cpu []time.Duration
}

// newCPUMeter measures the processes whose pids cfg gives (0: not measured)
// and ledgerbench itself, and takes a first reading to prove it can.
//
// Errors: a process that cannot be read ("no such process": a wrong pid, or
// ledgerd on another machine).
func newCPUMeter(cfg *Config) (*cpuMeter, error) {
	m := &cpuMeter{root: "/proc", now: cfg.Now}
	m.ticks, m.ticksSource = clockTicks()
	for _, p := range []measuredProcess{{procLedgerd, cfg.LedgerdPID}, {procPostgres, cfg.PostgresPID}, {procNATS, cfg.NATSPID}} {
		if p.pid > 0 {
			m.procs = append(m.procs, p)
		}
	}
	m.procs = append(m.procs, measuredProcess{name: procBench})
	if _, err := m.sample(); err != nil {
		return nil, err
	}
	return m, nil
}

// sample reads every process's CPU time.
//
// Errors: treeTicks's or selfCPU's, naming the process.
func (m *cpuMeter) sample() (cpuSample, error) {
	s := cpuSample{at: m.now(), cpu: make([]time.Duration, len(m.procs))}
	for i, p := range m.procs {
		if p.pid == 0 {
			d, err := selfCPU()
			if err != nil {
				return cpuSample{}, fmt.Errorf("cpu of %s: %w", p.name, err)
			}
			s.cpu[i] = d
			continue
		}
		ticks, err := treeTicks(m.root, p.pid)
		if err != nil {
			return cpuSample{}, fmt.Errorf("cpu of %s (pid %d): %w", p.name, p.pid, err)
		}
		s.cpu[i] = m.duration(ticks)
	}
	return s, nil
}

// duration converts clock ticks to time, exactly for any divisor of 10^9.
func (m *cpuMeter) duration(ticks uint64) time.Duration {
	return time.Duration(ticks) * (time.Second / time.Duration(m.ticks))
}

// window is the CPU time each process spent between two samples, per
// transfer of the window.
func (m *cpuMeter) window(from, to cpuSample, transfers int64) *CPUWindow {
	w := &CPUWindow{Seconds: to.at.Sub(from.at).Seconds(), Transfers: transfers, Processes: make([]ProcessCPU, len(m.procs))}
	for i, p := range m.procs {
		spent := to.cpu[i] - from.cpu[i]
		pc := ProcessCPU{Name: p.name, PID: p.pid, CPUSeconds: spent.Seconds()}
		if transfers > 0 {
			pc.UsPerTransfer = float64(spent.Microseconds()) / float64(transfers)
		}
		if w.Seconds > 0 {
			pc.Cores = pc.CPUSeconds / w.Seconds
		}
		w.Processes[i] = pc
		w.TotalUsPerTransfer += pc.UsPerTransfer
	}
	return w
}

// report starts the run's CPU report.
func (m *cpuMeter) report() *CPUReport {
	return &CPUReport{ClockTicksPerSecond: m.ticks, ClockTicksSource: m.ticksSource, Meaning: CPUMeaning}
}
