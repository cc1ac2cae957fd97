// Package dhclient is netevd's source for ISC dhclient: it watches
// dhclient's lease files, parses them, works out the current lease of each
// interface and reports it to the pipeline as an event.KindManager event
// with Backend "dhclient". It satisfies pipeline.Source; cmd/netevd wires
// it. It imports no netlink or D-Bus library: interface names are resolved
// with net.InterfaceByName in the namespace the daemon runs in.
//
// # Files
//
// The source watches directories (Options.Dirs, by default /var/lib/dhcp
// of Debian and /var/lib/dhclient of RHEL) for lease files: names that
// start with "dhclient" and end in ".leases" or ".lease", which covers
// dhclient.leases, dhclient6.leases, dhclient.<if>.leases,
// dhclient-<if>.leases and NetworkManager's dhclient-<uuid>-<if>.lease.
// dhcpd.leases (a DHCP server's file) does not match. Options.Files names
// further files that are read whatever their names. A directory that does
// not exist is waited for: the source watches its nearest existing parent
// and starts reading the directory when it appears.
//
// dhclient appends a block to the file for every lease it gets and now and
// then rewrites the file in place; other tools write a new file and rename
// it over the old one. Both are seen. Changes are debounced (Options.Debounce)
// and a file that ends inside a block (caught mid-write) is read again
// before it is believed.
//
// # Which lease is current
//
// Within a file, a later block is newer: that is how dhclient itself reads
// the file ("the last lease in the lease file on a particular interface is
// the active lease"). Files are ordered by modification time. The current
// lease of an interface, per address family, is the newest one that has not
// expired; a lease6 marked released or abandoned never is. When an
// interface's current lease expires the source reports it at that moment
// (a timer, not a file change) and moves on to the next newest unexpired
// lease, if there is one.
//
// # Reports
//
// Each report describes one interface completely:
//
//   - States {"Lease": "routable"} while a lease is current (routable.d
//     runs), {"Lease": "expired"} when every lease of the interface has
//     expired, and Gone when the interface has no lease left in any file.
//   - Env: DHCP_ADDRESS, DHCP_SUBNET_MASK, DHCP_GATEWAY (routers),
//     DHCP_DNS, DHCP_DOMAIN, DHCP_HOSTNAME, DHCP_LEASE (the lease as JSON)
//     and DHCP_<OPTION> for every option of the IPv4 lease, and for a
//     DHCPv6 lease DHCP6_ADDRESS, DHCP6_PREFIX, DHCP6_DNS, DHCP6_DOMAIN,
//     DHCP6_LEASE and DHCP_DHCP6_<OPTION>. Lists are space-separated, as
//     dhclient-script sees them.
//   - DNS, Domains and Hostname from the current leases (none once expired).
//   - Refresh when a bound lease's data changed (a renewal with new
//     options); a renewal that only moves the lease's times is reported
//     without Refresh, and a rewrite that changes nothing is not reported.
//
// A report is sent only when it differs from the last one for the interface,
// and only once the interface exists: until then it is re-checked at every
// change of the lease files.
package dhclient
