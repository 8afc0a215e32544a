package audit

// WithTransferBuckets returns opts whose transfers check sums its digests in
// buckets of span positions and compares perRead of them a read of the log.
func WithTransferBuckets(opts Options, span uint64, perRead int) Options {
	opts.transferBucketSpan, opts.transferBucketsPerRead = span, perRead
	return opts
}
