package audit

// SetTransferBuckets makes the transfers check's buckets span positions
// and its second reads compare perRead of them, until the test ends.
func SetTransferBuckets(t interface{ Cleanup(func()) }, span uint64, perRead int) {
	was, wasPerRead := transferBucketSpan, transferRecheckBucketsMax
	transferBucketSpan, transferRecheckBucketsMax = span, perRead
	t.Cleanup(func() { transferBucketSpan, transferRecheckBucketsMax = was, wasPerRead })
}
