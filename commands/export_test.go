package commands

// SetRecentMax sets how many recent transfers a writer keeps, so that tests
// can push transfers out of memory and exercise the read of the log.
func SetRecentMax(o *Options, n int) { o.recentMax = n }
