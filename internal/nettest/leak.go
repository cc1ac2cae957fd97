package nettest

import (
	"runtime"
	"testing"
	"time"
)

// leakSettle bounds how long CheckGoroutines waits for goroutines that are
// already on their way out (closing sockets, finished AfterFuncs).
const leakSettle = 5 * time.Second

// CheckGoroutines records the number of goroutines now and, in tb.Cleanup,
// fails the test if more are still running once they had time to settle,
// printing every goroutine's stack. Call it first in a test so its check
// runs after the test's other cleanups. Not for parallel tests.
func CheckGoroutines(tb testing.TB) {
	tb.Helper()
	before := runtime.NumGoroutine()
	tb.Cleanup(func() {
		deadline := time.Now().Add(leakSettle)
		n := runtime.NumGoroutine()
		for n > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			n = runtime.NumGoroutine()
		}
		if n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Errorf("goroutine leak: %d running, %d before the test\n%s", n, before, buf)
		}
	})
}
