package chaos

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A delay line on nfnetlink_queue: the kernel hands each packet that hits
// an NFQUEUE rule to the netlink socket bound to that queue number in that
// network namespace, and holds it until the socket sends a verdict. We
// receive only metadata (no payload), keep (packet id, due time) in a heap,
// and send NF_ACCEPT when a packet is due.
//
// Wire format (linux/netfilter/nfnetlink_queue.h), all integers big endian:
// every message is a netlink header, a 4-byte nfgenmsg {family u8,
// version u8 = 0, res_id be16 = queue number}, then attributes. The
// message type is (NFNL_SUBSYS_QUEUE << 8) | msg.
//
//	config  (msg 2): NFQA_CFG_CMD {command u8, pad u8, pf be16}
//	                 NFQA_CFG_PARAMS {copy_range be32, copy_mode u8} (packed)
//	                 NFQA_CFG_QUEUE_MAXLEN be32, NFQA_CFG_MASK be32,
//	                 NFQA_CFG_FLAGS be32
//	packet  (msg 0): NFQA_PACKET_HDR {packet_id be32, hw_protocol be16, hook u8}
//	verdict (msg 1): NFQA_VERDICT_HDR {verdict be32, id be32}
//
// Binding creates the queue instance; closing the socket destroys it, and
// the kernel then drops the packets it still holds (the harness accepts
// them first, in close). We set fail-open, so a full queue passes packets
// instead of dropping them, and GSO, so large segments are queued whole
// rather than split in software.
const (
	nfnlSubsysQueue = 3

	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind = 1
	nfqnlCopyMeta   = 1

	nfqaCfgFFailOpen = 1 << 0
	nfqaCfgFGSO      = 1 << 2

	nfAccept = 1

	queueMaxLen = 1 << 16
)

// delayQueue holds packets of one NFQUEUE for a delay. It owns two
// goroutines, the receiver and the releaser; close stops and waits for
// both.
type delayQueue struct {
	log  *slog.Logger
	conn *netlink.Conn
	num  uint16
	gen  int // the node's start generation it was opened in; see node.gen

	mu     sync.Mutex // guards delay, jitter, rnd
	delay  time.Duration
	jitter time.Duration
	rnd    *rand.Rand

	in          chan heldPacket // receiver -> releaser
	stop        chan struct{}
	receiveDone chan struct{}
	releaseDone chan struct{}
	stopOnce    sync.Once
	closeErr    error

	held     atomic.Uint64 // packets received
	accepted atomic.Uint64 // verdicts sent
	dead     atomic.Bool   // the receiver failed and closed the socket

	connOnce sync.Once // closes conn once, whoever comes first
	connErr  error
}

func (q *delayQueue) closeConn() error {
	q.connOnce.Do(func() { q.connErr = q.conn.Close() })
	return q.connErr
}

type heldPacket struct {
	id  uint32
	due time.Time
}

// openDelayQueue binds queue num in the network namespace of pid and starts
// delaying the packets that reach it.
func openDelayQueue(log *slog.Logger, pid int, num uint16, delay, jitter time.Duration) (*delayQueue, error) {
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.Fd())})
	// The socket keeps its namespace; the file is no longer needed.
	_ = ns.Close()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	q := &delayQueue{
		log: log, conn: conn, num: num,
		delay: delay, jitter: jitter,
		rnd:         rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		in:          make(chan heldPacket, 4096),
		stop:        make(chan struct{}),
		receiveDone: make(chan struct{}),
		releaseDone: make(chan struct{}),
	}
	if err := q.bind(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	// Packets arrive in bursts; a large buffer avoids ENOBUFS, which would
	// lose the messages (and so the packets).
	_ = conn.SetReadBuffer(8 << 20)
	go q.receive()
	go q.release()
	return q, nil
}

func (q *delayQueue) header(msg uint16) netlink.Header {
	return netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | msg), Flags: netlink.Request}
}

func (q *delayQueue) nfgen() []byte {
	b := []byte{unix.AF_UNSPEC, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], q.num)
	return b
}

func (q *delayQueue) bind() error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Bytes(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0)
	params[4] = nfqnlCopyMeta
	ae.Bytes(nfqaCfgParams, params)
	ae.Uint32(nfqaCfgQueueMaxlen, queueMaxLen)
	ae.Uint32(nfqaCfgMask, nfqaCfgFFailOpen|nfqaCfgFGSO)
	ae.Uint32(nfqaCfgFlags, nfqaCfgFFailOpen|nfqaCfgFGSO)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("nfqueue config: %w", err)
	}
	h := q.header(nfqnlMsgConfig)
	h.Flags |= netlink.Acknowledge
	if _, err := q.conn.Execute(netlink.Message{Header: h, Data: append(q.nfgen(), attrs...)}); err != nil {
		return fmt.Errorf("nfqueue bind %d: %w", q.num, err)
	}
	return nil
}

func (q *delayQueue) setDelay(d, jitter time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.delay, q.jitter = d, jitter
}

// hold returns how long to keep the next packet.
func (q *delayQueue) hold() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.delay
	if q.jitter > 0 {
		d += time.Duration(q.rnd.Int64N(int64(2*q.jitter)+1)) - q.jitter
	}
	return max(d, 0)
}

func (q *delayQueue) stopping() bool {
	select {
	case <-q.stop:
		return true
	default:
		return false
	}
}

// receive reads packet notifications and passes them to the releaser.
func (q *delayQueue) receive() {
	defer close(q.receiveDone)
	for {
		msgs, err := q.conn.Receive()
		if err != nil {
			if q.stopping() {
				return
			}
			switch {
			case errors.Is(err, unix.ENOBUFS):
				q.log.Warn("chaos: delay queue overrun; packets lost", "queue", q.num)
				continue
			case errors.Is(err, unix.ENOENT):
				// The kernel answers a verdict for a packet it no longer
				// holds with ENOENT: replacing the namespace's rules
				// (iptables-restore) drops the packets queued under the
				// old ones. TCP resends them; the reader must go on, or
				// the link is black-holed until the queue fills.
				q.log.Debug("chaos: delay queue: verdict for a dropped packet", "queue", q.num)
				continue
			}
			// Anything else is fatal for the socket. Unbind rather than
			// leave a bound queue nobody reads: --queue-bypass then lets
			// the link's packets through undelayed.
			q.log.Error("chaos: delay queue receive failed; the link is no longer delayed", "queue", q.num, "err", err)
			q.dead.Store(true)
			_ = q.closeConn()
			return
		}
		now := time.Now()
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysQueue<<8|nfqnlMsgPacket) || len(m.Data) < 4 {
				continue
			}
			id, ok := packetID(m.Data[4:])
			if !ok {
				continue
			}
			q.held.Add(1)
			select {
			case q.in <- heldPacket{id: id, due: now.Add(q.hold())}:
			case <-q.stop:
				return
			}
		}
	}
}

func packetID(attrs []byte) (uint32, bool) {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == nfqaPacketHdr {
			b := ad.Bytes()
			if len(b) < 4 {
				return 0, false
			}
			return binary.BigEndian.Uint32(b), true
		}
	}
	return 0, false
}

// release sends NF_ACCEPT for each packet when it is due; on stop it
// accepts every packet still held.
func (q *delayQueue) release() {
	defer close(q.releaseDone)
	var h packetHeap
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if h.Len() > 0 {
			timer.Reset(time.Until(h[0].due))
		}
		select {
		case p := <-q.in:
			heap.Push(&h, p)
		case <-timer.C:
		case <-q.stop:
		flush:
			for {
				select {
				case p := <-q.in:
					heap.Push(&h, p)
				default:
					break flush
				}
			}
			q.accept(h.drain(time.Time{}))
			return
		}
		q.accept(h.drain(time.Now()))
	}
}

func (q *delayQueue) accept(ids []uint32) {
	if len(ids) == 0 {
		return
	}
	msgs := make([]netlink.Message, len(ids))
	for i, id := range ids {
		v := make([]byte, 8)
		binary.BigEndian.PutUint32(v[0:], nfAccept)
		binary.BigEndian.PutUint32(v[4:], id)
		ae := netlink.NewAttributeEncoder()
		ae.Bytes(nfqaVerdictHdr, v)
		attrs, _ := ae.Encode() // cannot fail for one fixed-size attribute
		msgs[i] = netlink.Message{Header: q.header(nfqnlMsgVerdict), Data: append(q.nfgen(), attrs...)}
	}
	if _, err := q.conn.SendMessages(msgs); err != nil {
		if !q.stopping() && !q.dead.Load() {
			q.log.Warn("chaos: delay queue verdict", "queue", q.num, "err", err)
		}
		return
	}
	q.accepted.Add(uint64(len(ids)))
}

// close accepts every held packet, unbinds the queue and waits for the
// goroutines. Safe to call more than once.
func (q *delayQueue) close() error {
	q.stopOnce.Do(func() {
		close(q.stop)
		// The releaser flushes while the socket is still open; then closing
		// the socket ends the receiver's blocking read.
		<-q.releaseDone
		if err := q.closeConn(); err != nil && !q.dead.Load() {
			q.closeErr = err
		}
		<-q.receiveDone
	})
	return q.closeErr
}

// packetHeap orders held packets by due time.
type packetHeap []heldPacket

func (h packetHeap) Len() int           { return len(h) }
func (h packetHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h packetHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)        { *h = append(*h, x.(heldPacket)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// drain pops every packet due at or before now; the zero time pops all.
func (h *packetHeap) drain(now time.Time) []uint32 {
	var ids []uint32
	for h.Len() > 0 && (now.IsZero() || !(*h)[0].due.After(now)) {
		ids = append(ids, heap.Pop(h).(heldPacket).id)
	}
	return ids
}
