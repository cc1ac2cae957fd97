//go:build race

package script

// raceEnabled is set under the race detector, which makes sync.Pool drop
// items at random, so allocation counts vary between runs.
const raceEnabled = true
