package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/netevd/netevd/internal/config"
	"github.com/netevd/netevd/internal/pipeline"
	"github.com/netevd/netevd/internal/sdbus"
	"github.com/netevd/netevd/internal/source/dhclient"
	"github.com/netevd/netevd/internal/source/networkd"
	"github.com/netevd/netevd/internal/source/nm"
)

// Well-known bus names of the managers "auto" looks for.
const (
	busNetworkd       = "org.freedesktop.network1"
	busNetworkManager = "org.freedesktop.NetworkManager"
)

// chooseBackend resolves system.backend. For "auto" it picks
// systemd-networkd or NetworkManager by the bus name that is owned, then
// dhclient when lease files exist, else none (kernel events only), and says
// why.
func chooseBackend(ctx context.Context, cfg *config.Config) (backend, why string) {
	if b := cfg.System.Backend; b != config.BackendAuto {
		return b, "configured"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if bus, err := sdbus.Dial(ctx, ""); err != nil {
		why = fmt.Sprintf("no system bus (%v)", err)
	} else {
		defer bus.Close()
		for _, c := range []struct{ name, backend string }{
			{busNetworkd, config.BackendNetworkd},
			{busNetworkManager, config.BackendNetworkManager},
		} {
			if ok, err := bus.NameHasOwner(ctx, c.name); err == nil && ok {
				return c.backend, c.name + " is on the system bus"
			}
		}
		why = "neither " + busNetworkd + " nor " + busNetworkManager + " is on the system bus"
	}
	if f := leaseFile(cfg.Backends.Dhclient); f != "" {
		return config.BackendDhclient, why + "; lease file " + f + " exists"
	}
	return config.BackendNone, why + "; no dhclient lease files"
}

// leaseFile returns a dhclient lease file that exists, or "".
func leaseFile(d config.Dhclient) string {
	if _, err := os.Stat(d.LeaseFile); err == nil {
		return d.LeaseFile
	}
	for _, dir := range d.LeaseDirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if dhclient.IsLeaseFileName(e.Name()) {
				return filepath.Join(dir, e.Name())
			}
		}
	}
	return ""
}

// managerSource builds the source of a network manager backend; nil for
// backend none.
func managerSource(backend string, cfg *config.Config, log *slog.Logger) (pipeline.Source, error) {
	switch backend {
	case config.BackendNone:
		return nil, nil
	case config.BackendNetworkd: // backend: systemd-networkd
		src, err := networkd.New(networkd.Options{EmitJSON: cfg.Backends.SystemdNetworkd.EmitJSON}, log)
		if err != nil {
			return nil, err
		}
		return src, nil
	case config.BackendNetworkManager:
		src, err := nm.New(nm.Options{}, log)
		if err != nil {
			return nil, err
		}
		return src, nil
	case config.BackendDhclient:
		d := cfg.Backends.Dhclient
		var files []string
		if d.LeaseFile != "" {
			files = []string{d.LeaseFile}
		}
		return dhclient.New(dhclient.Options{Dirs: d.LeaseDirs, Files: files}, log)
	}
	return nil, errNotBuilt
}

// errNotBuilt says that this build has no source for a backend; the daemon
// then runs on kernel events alone.
var errNotBuilt = errors.New("not supported by this build")
