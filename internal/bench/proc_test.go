package bench

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/internal/testenv"
)

// envBurnChild makes the test binary a child that spends CPU time and exits
// (TestTreeTicksCountsAChild).
const envBurnChild = "LEDGERBENCH_TEST_BURN_CHILD"

// burnChildCPU is the CPU time the child spends: several clock ticks.
const burnChildCPU = 150 * time.Millisecond

func TestMain(m *testing.M) {
	if os.Getenv(envBurnChild) != "" {
		burn(burnChildCPU)
		os.Exit(0)
	}
	testenv.Main(m)
}

// burn spins until this process has spent d of CPU time: a CPU budget, not
// a wall-clock wait.
func burn(d time.Duration) {
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		if spent, err := selfCPU(); err != nil || spent >= d {
			_ = x
			return
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Fields 3..17 after the name: state ppid pgrp session tty tpgid flags
	// minflt cminflt majflt cmajflt utime stime cutime cstime.
	tail := " S 7 7 7 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 100 1000 10"
	tests := []struct {
		name, line string
		want       procStat
	}{
		{"plain", "42 (postgres)" + tail, procStat{pid: 42, ppid: 7, utime: 11, stime: 22, cutime: 33, cstime: 44}},
		{"name with spaces and parentheses", "42 (a) b (c))" + tail, procStat{pid: 42, ppid: 7, utime: 11, stime: 22, cutime: 33, cstime: 44}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.line + "\n"))
			if err != nil || got != tt.want {
				t.Errorf("parseProcStat(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "42 postgres S 1", "x (p)" + tail, "42 (p) S 7 7 7", "42 (p) S x" + tail[4:], "42 (p)" + strings.Replace(tail, "11", "-1", 1)} {
		if got, err := parseProcStat([]byte(bad)); !errors.Is(err, ErrProcStat) {
			t.Errorf("parseProcStat(%q) = %+v, %v; want ErrProcStat", bad, got, err)
		}
	}
}

func TestReadProcStatOfItself(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	burn(20 * time.Millisecond)
	s, err := readProcStat("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.pid != os.Getpid() || s.ppid != os.Getppid() {
		t.Errorf("readProcStat(self) = pid %d ppid %d, want %d %d", s.pid, s.ppid, os.Getpid(), os.Getppid())
	}
	// getrusage and /proc count the same time; the ticks round down.
	spent, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	ticks, _ := clockTicks()
	m := &cpuMeter{ticks: ticks}
	if got := m.duration(s.utime + s.stime); got == 0 || got > spent+time.Second/time.Duration(ticks) {
		t.Errorf("/proc says %s of CPU, getrusage %s", got, spent)
	}
	if _, err := readProcStat("/proc", 0); err == nil {
		t.Error("readProcStat(pid 0) succeeded, want an error")
	}
}

// TestTreeTicksCountsAChild starts a child that spends CPU: while it lives
// it is counted as a live child, and once waited for, through cutime and
// cstime, so that a process's tree time never loses it.
func TestTreeTicksCountsAChild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	ticks, _ := clockTicks()
	self := os.Getpid()
	before, err := treeTicks("/proc", self)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envBurnChild+"=1")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	s, err := readProcStat("/proc", child.Process.Pid)
	if err != nil {
		t.Fatalf("child %d: %v", child.Process.Pid, err)
	}
	if s.ppid != self {
		t.Errorf("child %d has ppid %d, want %d", s.pid, s.ppid, self)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	after, err := treeTicks("/proc", self)
	if err != nil {
		t.Fatal(err)
	}
	childCPU := child.ProcessState.UserTime() + child.ProcessState.SystemTime()
	childTicks := uint64(childCPU / (time.Second / time.Duration(ticks)))
	if childTicks < 5 {
		t.Fatalf("the child spent %s (%d ticks), want at least %s", childCPU, childTicks, burnChildCPU)
	}
	// One tick of slack: wait4's rusage and cutime round the same time apart.
	if after-before+1 < childTicks {
		t.Errorf("tree ticks grew by %d over the child's life, want at least the child's %d", after-before, childTicks)
	}
}

func TestTreeTicksOfAMissingProcess(t *testing.T) {
	if _, err := treeTicks(t.TempDir(), 1); err == nil {
		t.Error("treeTicks of an empty /proc succeeded, want an error")
	}
}

func TestClockTicks(t *testing.T) {
	ticks, source := clockTicks()
	if ticks <= 0 {
		t.Errorf("clockTicks() = %d, want > 0", ticks)
	}
	if runtime.GOOS == "linux" && !strings.HasPrefix(source, "AT_CLKTCK") {
		t.Errorf("clockTicks() source %q, want AT_CLKTCK on Linux", source)
	}
}

func TestAuxvValue(t *testing.T) {
	for _, word := range []int{4, 8} {
		t.Run(strconv.Itoa(word*8)+" bits", func(t *testing.T) {
			var b []byte
			for _, v := range []uint64{6, 4096, atClkTck, 250, 0, 0, atClkTck, 999} {
				if word == 4 {
					b = binary.NativeEndian.AppendUint32(b, uint32(v))
				} else {
					b = binary.NativeEndian.AppendUint64(b, v)
				}
			}
			if got, ok := auxvValue(b, atClkTck, word); !ok || got != 250 {
				t.Errorf("auxvValue(AT_CLKTCK) = %d, %t; want 250 (the entry before AT_NULL)", got, ok)
			}
			if got, ok := auxvValue(b, 99, word); ok {
				t.Errorf("auxvValue(99) = %d, found; want not found", got)
			}
			if _, ok := auxvValue(b[:3], atClkTck, word); ok {
				t.Error("auxvValue of a short vector found a value")
			}
		})
	}
}

func TestCPUMeterWindow(t *testing.T) {
	m := &cpuMeter{ticks: 100, procs: []measuredProcess{{procLedgerd, 10}, {procPostgres, 20}, {procBench, 0}}}
	t0 := time.Unix(100, 0)
	from := cpuSample{at: t0, cpu: []time.Duration{time.Second, 2 * time.Second, 0}}
	to := cpuSample{at: t0.Add(2 * time.Second), cpu: []time.Duration{2 * time.Second, 3500 * time.Millisecond, 100 * time.Millisecond}}
	w := m.window(from, to, 10_000)
	want := []ProcessCPU{
		{Name: procLedgerd, PID: 10, CPUSeconds: 1, UsPerTransfer: 100, Cores: 0.5},
		{Name: procPostgres, PID: 20, CPUSeconds: 1.5, UsPerTransfer: 150, Cores: 0.75},
		{Name: procBench, CPUSeconds: 0.1, UsPerTransfer: 10, Cores: 0.05},
	}
	if w.Seconds != 2 || w.Transfers != 10_000 || w.TotalUsPerTransfer != 260 || len(w.Processes) != len(want) {
		t.Fatalf("window = %+v, want 2 s, 10000 transfers, 260 µs in all", w)
	}
	for i, p := range w.Processes {
		if p != want[i] {
			t.Errorf("process %d = %+v, want %+v", i, p, want[i])
		}
	}
	if got, ok := w.Process(procPostgres); !ok || got != want[1] {
		t.Errorf("Process(postgres) = %+v, %t", got, ok)
	}
	if _, ok := w.Process(procNATS); ok {
		t.Error("Process(nats) found, want not measured")
	}
	if got := m.duration(3); got != 30*time.Millisecond {
		t.Errorf("duration(3 ticks at 100/s) = %s, want 30ms", got)
	}
}

func TestNewCPUMeterRefusesAMissingProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	// A pid past the kernel's pid_max exists nowhere.
	cfg := &Config{PostgresPID: PIDMax + 1, Now: time.Now}
	if _, err := newCPUMeter(cfg); err == nil {
		t.Error("newCPUMeter with a missing postgres pid succeeded, want an error")
	}
	m, err := newCPUMeter(&Config{LedgerdPID: os.Getpid(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.procs) != 2 || m.procs[0].name != procLedgerd || m.procs[1].name != procBench {
		t.Errorf("meter processes = %+v, want ledgerd and ledgerbench", m.procs)
	}
}
