package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The kernel's process-events connector (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc         = 1 // CN_IDX_PROC, also the multicast group
	cnValProc         = 1 // CN_VAL_PROC
	procCnMcastListen = 1 // PROC_CN_MCAST_LISTEN
	procCnMcastIgnore = 2 // PROC_CN_MCAST_IGNORE
	procEventFork     = 0x1
	procEventExec     = 0x2

	sizeofCnMsg = 20 // struct cn_msg: cb_id (idx, val), seq, ack, len, flags
)

// procEvent is the part of a struct proc_event the harness uses.
type procEvent struct {
	what uint32
	// fork: parent_pid, parent_tgid, child_pid, child_tgid;
	// exec: process_pid, process_tgid, 0, 0.
	a, b, c, d uint32
}

// decodeProcEvent reads the proc_event in the payload of one connector
// netlink message (cn_msg header included).
func decodeProcEvent(data []byte) (procEvent, error) {
	const head = sizeofCnMsg
	if len(data) < head+16 {
		return procEvent{}, fmt.Errorf("connector message of %d bytes: too short", len(data))
	}
	if idx, val := binary.NativeEndian.Uint32(data[0:]), binary.NativeEndian.Uint32(data[4:]); idx != cnIdxProc || val != cnValProc {
		return procEvent{}, fmt.Errorf("connector message for %d/%d, not process events", idx, val)
	}
	ev := data[head:]
	pe := procEvent{what: binary.NativeEndian.Uint32(ev[0:])}
	// what, cpu, timestamp_ns (8-aligned), then the union at 16.
	u := ev[16:]
	for i, p := range []*uint32{&pe.a, &pe.b, &pe.c, &pe.d} {
		if len(u) >= 4*(i+1) {
			*p = binary.NativeEndian.Uint32(u[4*i:])
		}
	}
	return pe, nil
}

// forkCounts is what a procWatch saw one process do.
type forkCounts struct {
	Processes uint64 // new processes (fork, vfork, clone without CLONE_THREAD)
	Threads   uint64 // new threads
	Execs     uint64 // execve by those new processes
	Events    uint64 // process events read from the kernel, anyone's
	Lost      uint64 // times the kernel dropped events (ENOBUFS): counts are then a lower bound
}

func (c forkCounts) sub(o forkCounts) forkCounts {
	return forkCounts{c.Processes - o.Processes, c.Threads - o.Threads, c.Execs - o.Execs, c.Events - o.Events, c.Lost - o.Lost}
}

// forkCounter attributes process events to one process (tgid).
type forkCounter struct {
	tgid   uint32
	counts forkCounts
	kids   map[uint32]bool // processes it created
}

func (f *forkCounter) add(pe procEvent) {
	f.counts.Events++
	switch pe.what {
	case procEventFork:
		// The kernel names the creator's real parent: for a new process
		// that is the process that forked, for a new thread (CLONE_THREAD)
		// it is the parent of the whole thread group, so a thread of
		// tgid is recognised by its child_tgid instead.
		parentTgid, childPid, childTgid := pe.b, pe.c, pe.d
		switch {
		case childPid == childTgid && parentTgid == f.tgid:
			f.counts.Processes++
			if f.kids == nil {
				f.kids = make(map[uint32]bool)
			}
			f.kids[childTgid] = true
		case childPid != childTgid && childTgid == f.tgid:
			f.counts.Threads++
		}
	case procEventExec:
		if f.kids[pe.b] {
			f.counts.Execs++
		}
	}
}

// procWatch counts the processes and threads one process creates, as the
// kernel reports them on the process-events connector. That socket works
// only in the initial network namespace, where the harness runs; the
// counted process may live in any.
type procWatch struct {
	fd        int
	stop      atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	final     forkCounts

	mu sync.Mutex // guards the field below
	fc forkCounter
}

// watchForks starts counting what pid creates.
func watchForks(pid int) (*procWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("process-events socket: %w", err)
	}
	w := &procWatch{fd: fd, done: make(chan struct{}), fc: forkCounter{tgid: uint32(pid)}}
	if err := w.setup(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("process-events connector: %w", err)
	}
	go w.read()
	return w, nil
}

func (w *procWatch) setup() error {
	// A large buffer: every process on the machine is reported, and other
	// work (compilers) may fork a lot meanwhile.
	if err := unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
		return err
	}
	tv := unix.NsecToTimeval(100e6)
	if err := unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Bind(w.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return err
	}
	return w.control(procCnMcastListen)
}

// control sends a PROC_CN_MCAST_* operation.
func (w *procWatch) control(op uint32) error {
	msg := make([]byte, unix.NLMSG_HDRLEN+sizeofCnMsg+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_DONE)
	cn := msg[unix.NLMSG_HDRLEN:]
	binary.NativeEndian.PutUint32(cn[0:], cnIdxProc)
	binary.NativeEndian.PutUint32(cn[4:], cnValProc)
	binary.NativeEndian.PutUint16(cn[16:], 4)
	binary.NativeEndian.PutUint32(cn[sizeofCnMsg:], op)
	return unix.Sendto(w.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (w *procWatch) read() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		// Once asked to stop, read what is queued and return when the
		// socket is empty.
		stopping, flags := w.stop.Load(), 0
		if stopping {
			flags = unix.MSG_DONTWAIT
		}
		n, _, err := unix.Recvfrom(w.fd, buf, flags)
		switch {
		case errors.Is(err, unix.EAGAIN): // SO_RCVTIMEO, or empty while stopping
			if stopping {
				return
			}
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			w.mu.Lock()
			w.fc.counts.Lost++
			w.mu.Unlock()
			continue
		case err != nil:
			return
		}
		w.mu.Lock()
		for _, m := range netlinkPayloads(buf[:n]) {
			if pe, err := decodeProcEvent(m); err == nil {
				w.fc.add(pe)
			}
		}
		w.mu.Unlock()
	}
}

// counts returns the counts so far.
func (w *procWatch) counts() forkCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fc.counts
}

// close reads what is queued, stops, and returns the final counts. It is
// idempotent.
func (w *procWatch) close() forkCounts {
	w.closeOnce.Do(func() {
		w.stop.Store(true)
		<-w.done
		_ = w.control(procCnMcastIgnore)
		unix.Close(w.fd)
		w.final = w.counts()
	})
	return w.final
}

// netlinkPayloads splits a netlink datagram into the payloads of its
// messages. A truncated message ends the list.
func netlinkPayloads(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		out = append(out, b[unix.NLMSG_HDRLEN:l])
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return out
}
