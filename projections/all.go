package projections

// All returns every projector ledgerd runs, one runner each per ledger. Each
// has its own checkpoint, so one can be rebuilt or lag without the others.
func All() []Projector {
	return []Projector{
		Balances{},
		NewMovements(),
		Transfers{},
		NewReconciliation(),
		NewAlerts(),
	}
}
