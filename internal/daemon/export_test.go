package daemon

// PoolAcquires is how many connections the pools of commands and queries
// have lent so far: what requests cost PostgreSQL, for tests to count.
func (m *Main) PoolAcquires() int64 {
	n := m.pool.Stat().AcquireCount()
	if m.readPool != m.pool {
		n += m.readPool.Stat().AcquireCount()
	}
	return n
}
