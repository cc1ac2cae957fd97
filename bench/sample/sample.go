// Package sample holds the order statistics the benchmark harnesses under
// bench/ report: nearest-rank percentiles and millisecond formatting of
// samples in nanoseconds. It imports nothing from netevd.
package sample

import "strconv"

// Rank returns the nearest-rank p-th percentile of the sorted, non-empty
// sample s: the smallest value with at least p% of the sample at or below
// it.
func Rank(s []int64, p int) int64 {
	i := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(i, 1)-1]
}

// MS formats nanoseconds as milliseconds with three decimals.
func MS(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) }
