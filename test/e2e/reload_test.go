package e2e

import (
	"strings"
	"syscall"
	"testing"

	"github.com/netevd/netevd/internal/nettest"
)

// TestReload sends SIGHUP twice: with a broken config the daemon keeps
// running on the old one and says so; with monitoring.ignore: [veth*] it
// stops running scripts for veths.
func TestReload(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	l.addRecorder("link-added.d", "50-record")
	l.addRecorder("carrier.d", "50-record")
	l.addRecorder("no-carrier.d", "50-record")
	notify := listenNotify(t)
	// Debug logs: the pipeline logs every change it admits.
	d := l.start([]string{notify.env()}, "--log-level", "debug")
	notify.waitMessage(t, "READY=1", 1)

	nettest.VethPair(t, l.ns, l.peer, "veth0", 10, "vp0", 20)
	l.take("link-added.d", map[string]string{"LINK": "veth0"})

	// A broken config is refused and the daemon goes on.
	l.writeRawConfig("system:\n  backend: none\n  log_levle: debug\n")
	d.signal(syscall.SIGHUP)
	failed := d.waitLog("\"reload failed\"", func(r logRec) bool { return strings.HasPrefix(r.msg(), "reload failed") })
	if e := failed.str("error"); !strings.Contains(e, l.cfgPath+":3:") {
		t.Errorf("reload error %q does not point at %s:3", e, l.cfgPath)
	}
	notify.waitMessage(t, "RELOADING=1", 1)
	notify.waitMessage(t, "READY=1", 2)
	l.ns.Run("link", "set", "dev", "veth0", "up")
	l.peer.Run("link", "set", "dev", "vp0", "up")
	checkContract(t, l.take("carrier.d", map[string]string{"LINK": "veth0"}), false)

	// A valid change takes effect.
	l.writeConfig(labOptions{Ignore: []string{"veth*"}})
	d.signal(syscall.SIGHUP)
	reloadedAt, _ := d.waitLogFrom(0, "\"reloaded\"", func(r logRec) bool { return r.msg() == "reloaded" })
	l.peer.Run("link", "set", "dev", "vp0", "down")
	nettest.VethPair(t, l.ns, l.peer, "veth1", 11, "vp1", 21)
	// A bridge is still monitored. The pipeline admits changes in kernel
	// order, so once the bridge's change is logged, the veths' were decided.
	l.ns.Run("link", "add", "br0", "type", "bridge")
	checkContract(t, l.take("link-added.d", map[string]string{"LINK": "br0"}), false)
	brAt, _ := d.waitLogFrom(reloadedAt, "the bridge's change", func(r logRec) bool {
		return r.msg() == "change" && r.str("link") == "br0"
	})
	for i, r := range d.records()[reloadedAt:brAt] {
		if r.msg() == "change" && strings.HasPrefix(r.str("link"), "veth") {
			t.Errorf("log line %d: change %s of %s admitted after ignoring veth*", reloadedAt+i, r.str("event"), r.str("link"))
		}
	}
	d.stop()
	for _, r := range l.records() {
		if r.Dir == "no-carrier.d" || r.Env["LINK"] == "veth1" {
			t.Errorf("a script ran for an ignored link: %v", r)
		}
	}
}
