package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The CPU time of a process is read from /proc (Linux): fields 14-17 of
// /proc/<pid>/stat are utime, stime, cutime and cstime in clock ticks.
const (
	// clockTicksAssumed is CLK_TCK when the auxiliary vector cannot be read:
	// Linux has reported 100 to user space on every architecture for decades
	// (USER_HZ), whatever the kernel's internal HZ.
	clockTicksAssumed = 100
	// atClkTck is AT_CLKTCK, the auxiliary vector's entry holding what
	// sysconf(_SC_CLK_TCK) returns in C.
	atClkTck = 17
	// auxvBytesMax bounds the read of /proc/self/auxv (a few hundred bytes).
	auxvBytesMax = 64 << 10
	// statBytesMax bounds the read of one /proc/<pid>/stat (a line of
	// 52 numbers and a name of at most 16 bytes, as the kernel writes it).
	statBytesMax = 4 << 10
	// procEntriesMax bounds the /proc entries scanned for children: Linux's
	// pid_max is at most 4,194,304.
	procEntriesMax = 1 << 22
)

// ErrProcStat means a /proc/<pid>/stat could not be parsed.
var ErrProcStat = errors.New("malformed /proc stat")

// procStat is what one /proc/<pid>/stat says of CPU time, in clock ticks.
type procStat struct {
	pid, ppid                    int
	utime, stime, cutime, cstime uint64
}

// parseProcStat reads a /proc/<pid>/stat line. The process name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
//
// Errors: ErrProcStat.
func parseProcStat(b []byte) (procStat, error) {
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return procStat{}, fmt.Errorf("no (name) in %.40q: %w", b, ErrProcStat)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("pid %.20q: %w", b[:open], ErrProcStat)
	}
	// After the name: state (field 3), ppid (4), ... utime (14) .. cstime (17).
	rest := bytes.Fields(b[closing+1:])
	const cstimeAt = 17 - 3
	if len(rest) <= cstimeAt {
		return procStat{}, fmt.Errorf("pid %d: %d fields after the name, want at least %d: %w", pid, len(rest), cstimeAt+1, ErrProcStat)
	}
	s := procStat{pid: pid}
	if s.ppid, err = strconv.Atoi(string(rest[4-3])); err != nil {
		return procStat{}, fmt.Errorf("pid %d: ppid %q: %w", pid, rest[4-3], ErrProcStat)
	}
	for i, dst := range []*uint64{&s.utime, &s.stime, &s.cutime, &s.cstime} {
		// cutime and cstime are signed in the kernel (long) but never negative.
		if *dst, err = strconv.ParseUint(string(rest[14-3+i]), 10, 64); err != nil {
			return procStat{}, fmt.Errorf("pid %d: field %d %q: %w", pid, 14+i, rest[14-3+i], ErrProcStat)
		}
	}
	return s, nil
}

// readProcStat reads /proc/<pid>/stat under root (normally "/proc").
//
// Errors: the file's (fs.ErrNotExist when the process is gone); ErrProcStat.
func readProcStat(root string, pid int) (procStat, error) {
	f, err := os.Open(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	defer f.Close()
	b := make([]byte, statBytesMax)
	n, err := f.Read(b)
	if err != nil {
		return procStat{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return parseProcStat(b[:n])
}

// treeTicks is the CPU time of process pid and of its children, in clock
// ticks: its own utime+stime, cutime+cstime (children it has waited for,
// and their waited-for descendants), and utime+stime of each live child.
// The sum only grows while the process lives: a child that exits moves from
// the live children into cutime+cstime once its parent waits for it (the
// postmaster does at once), so backends that came and went between two
// readings are counted. A grandchild not waited for by a live child is not
// counted until then: PostgreSQL's backends have none.
//
// Errors: readProcStat's for pid; a child that vanishes while it is read is
// skipped.
func treeTicks(root string, pid int) (uint64, error) {
	self, err := readProcStat(root, pid)
	if err != nil {
		return 0, err
	}
	total := self.utime + self.stime + self.cutime + self.cstime
	entries, err := os.ReadDir(root)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", root, err)
	}
	if len(entries) > procEntriesMax {
		entries = entries[:procEntriesMax]
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		s, err := readProcStat(root, child)
		if err != nil || s.ppid != pid {
			continue
		}
		total += s.utime + s.stime
	}
	return total, nil
}

// clockTicks returns the clock ticks per second of /proc's times and where
// the figure came from: AT_CLKTCK from the auxiliary vector the kernel gave
// this process (what C's sysconf(_SC_CLK_TCK) reads), else the assumption.
func clockTicks() (int64, string) {
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil && len(b) <= auxvBytesMax {
		if v, ok := auxvValue(b, atClkTck, strconv.IntSize/8); ok && v > 0 {
			return int64(v), "AT_CLKTCK (sysconf(_SC_CLK_TCK))"
		}
	}
	return clockTicksAssumed, "assumed (USER_HZ; /proc/self/auxv unreadable)"
}

// auxvValue finds key in an auxiliary vector of native-endian word pairs.
func auxvValue(b []byte, key uint64, word int) (uint64, bool) {
	read := func(p []byte) uint64 {
		if word == 4 {
			return uint64(binary.NativeEndian.Uint32(p))
		}
		return binary.NativeEndian.Uint64(p)
	}
	for i := 0; i+2*word <= len(b); i += 2 * word {
		k := read(b[i:])
		if k == 0 { // AT_NULL ends the vector
			break
		}
		if k == key {
			return read(b[i+word:]), true
		}
	}
	return 0, false
}

// selfCPU is this process's user and system CPU time (getrusage).
//
// Errors: getrusage's.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
