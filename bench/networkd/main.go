// Command networkd is netevd's benchmark against networkd-dispatcher. On
// one real systemd-networkd, in one run, both dispatchers run a routable.d
// script whose first command records $EPOCHREALTIME (a bash variable: no
// fork), and the harness flaps the link that networkd manages. It prints a
// markdown report of, for each dispatcher, the time from networkd's
// PropertiesChanged(OperationalState=routable) signal and from the harness's
// `ip link set up` to the script, next to the floor (the same script
// fork+exec'd by the harness directly), and the number of flaps on which
// netevd's script ran after networkd-dispatcher's.
//
// The lab, following /work/shared/testbed (tb-networkd-dispatcher.sh):
//
//   - namespaces PREFIX-d (the daemons) and PREFIX-p (the far end), joined
//     by a veth with different ifindexes (veth0 = 10, vp0 = 20; equal ones
//     make the kernel rate-limit carrier-down events);
//   - in PREFIX-d, a private mount namespace with a tmpfs on /run (so a
//     private system bus at /run/dbus/system_bus_socket) and on
//     /etc/systemd/network, a read-only sysfs, dbus-daemon --system and
//     the real systemd-networkd with one .network file for veth0 (static
//     address and gateway, IPv6AcceptRA=no): veth0 becomes routable when
//     carrier comes, and networkd drops the address on carrier loss, so it
//     reports routable again on every flap;
//   - networkd-dispatcher (Debian's, Python) and bin/netevd
//     (system.backend: systemd-networkd) started inside with
//     nsenter -t PID -m -n -u, each with its own scripts directory;
//   - the harness connects to the private bus through
//     /proc/PID/root/run/dbus/system_bus_socket and notes when each
//     PropertiesChanged signal of veth0 reaches it (CLOCK_REALTIME), and
//     drives vp0 over a netlink socket in PREFIX-p.
//
// Every timestamp is CLOCK_REALTIME: $EPOCHREALTIME in the scripts,
// time.Now in the harness.
//
// It needs root. Run it through scripts/bench-networkd.sh, or:
//
//	make build && sudo go run ./bench/networkd -netevd bin/netevd
//
// Nothing outside the two namespaces is changed; they, every process
// started in them and the temporary directory are removed when it exits,
// also on error or Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netevd/netevd/bench/host"
)

type options struct {
	netevd     string        // the daemon binary
	dispatcher string        // networkd-dispatcher
	networkd   string        // systemd-networkd
	prefix     string        // namespace name prefix
	flaps      int           // timed flaps
	warmup     int           // flaps before the timed ones, not counted
	gap        time.Duration // pause between the phases of a flap
	driver     string        // how vp0 is set up: netlink or ip
	emitJSON   bool          // backends.systemd_networkd.emit_json of netevd
	raw        string        // write per-flap timings (TSV) here
	busctl     bool          // also stamp the signals with busctl monitor
	logLevel   string        // netevd's system.log_level
	env        envFlag       // extra environment of netevd (GOGC=..., GOMAXPROCS=...)
	keep       bool          // keep the temporary directory (logs)
}

func main() {
	var o options
	flag.StringVar(&o.netevd, "netevd", "bin/netevd", "the netevd binary to run")
	flag.StringVar(&o.dispatcher, "networkd-dispatcher", "networkd-dispatcher", "the networkd-dispatcher program")
	flag.StringVar(&o.networkd, "networkd", "/lib/systemd/systemd-networkd", "the systemd-networkd program")
	flag.StringVar(&o.prefix, "prefix", "netevd-nb-"+strconv.Itoa(os.Getpid()), "prefix of the namespace names (PREFIX-d, PREFIX-p)")
	flag.IntVar(&o.flaps, "flaps", 60, "timed link flaps (at least 50)")
	flag.IntVar(&o.warmup, "warmup", 3, "flaps before the timed ones, not counted")
	flag.DurationVar(&o.gap, "gap", 150*time.Millisecond, "pause after each phase of a flap (routable, no-carrier, floor run)")
	flag.StringVar(&o.driver, "driver", "netlink", "how vp0 is set up and down: netlink (a request on a socket the harness keeps open) or ip (fork+exec `ip -n PREFIX-p link set vp0 up`, as the testbed did)")
	flag.BoolVar(&o.emitJSON, "emit-json", true, "netevd's backends.systemd_networkd.emit_json (its default is true)")
	flag.StringVar(&o.raw, "raw", "", "also write the per-flap timings to this file (TSV)")
	flag.BoolVar(&o.busctl, "busctl", false, "also run `busctl --json=short monitor` inside and compare its time stamps of the routable signal with the harness's")
	flag.StringVar(&o.logLevel, "log-level", "info", "netevd's system.log_level (debug shows when each signal became an event; with -keep the log stays)")
	flag.Var(&o.env, "env", "KEY=VALUE added to netevd's environment, e.g. GOGC=50 (repeatable)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the logs")
	flag.Parse()
	if o.flaps < 50 || o.warmup < 1 {
		fmt.Fprintln(os.Stderr, "networkd: -flaps must be at least 50 and -warmup at least 1")
		os.Exit(2)
	}
	if o.driver != "netlink" && o.driver != "ip" {
		fmt.Fprintf(os.Stderr, "networkd: -driver %q: want netlink or ip\n", o.driver)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "networkd: needs root (network and mount namespaces, root-owned scripts)")
		os.Exit(2)
	}
	var err error
	if o.dispatcher, err = exec.LookPath(o.dispatcher); err != nil {
		fmt.Fprintln(os.Stderr, "networkd:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "networkd:", err)
		os.Exit(1)
	}
}

// envFlag collects repeated -env KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func run(ctx context.Context, o options) error {
	l, err := newLab(ctx, o)
	if l != nil {
		defer l.close()
	}
	if err != nil {
		return err
	}
	rep := &report{env: l.environment(), netevdPID: l.daemon.pid, dispatchPID: l.dispatcher.pid}
	if err := l.runFlaps(ctx, rep); err != nil {
		return err
	}
	rep.env.loadEnd = host.LoadAvg()
	rep.netevdBackend = l.netevdBackendLine()
	if l.busctl != nil {
		l.busctl.stop() // flushes its output
		l.busctl = nil
		stamps, err := busctlRoutable(l.busctlLog())
		if err != nil {
			return err
		}
		matchBusctl(rep.flaps, stamps)
		rep.busctl = true
	}
	if o.raw != "" {
		if err := rep.writeRaw(o.raw); err != nil {
			return err
		}
	}
	rep.write(os.Stdout)
	return nil
}
