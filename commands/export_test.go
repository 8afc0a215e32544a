package commands

// SetRecentMax sets how many recent transfers a writer keeps, so that tests
// can push transfers out of memory and exercise the read of the log.
func SetRecentMax(o *Options, n int) { o.recentMax = n }

// SetBeforeAppend makes the writer's committer call fn before each append,
// with the position the append expects: a test holds an append there to
// change the world between deciding a batch and appending it.
func SetBeforeAppend(o *Options, fn func(expected uint64)) { o.beforeAppend = fn }

// FailSnapshotSpools makes every snapshot's spool fail its writes, as a
// full disk would.
func FailSnapshotSpools(o *Options) { o.failSpools = true }

// SnapshotSpoolsOpen is how many of the writer's snapshot spools are not
// closed.
func SnapshotSpoolsOpen(w *Writer) int32 { return w.snap.spools.Load() }

// SetEventPayloadMax lowers the bound of an event's payload, so that a test
// reaches the writer's refusal of an event over it.
func SetEventPayloadMax(o *Options, n int) { o.eventPayloadMax = n }
