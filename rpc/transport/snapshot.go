package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// InstallSnapshot implements raft.Transport. It streams data to target in
// chunks of snapshotChunkBytes after a first message holding args, never
// holding more than one chunk in memory. There is no overall deadline: the
// call fails when a chunk makes no progress for Config.Timeout, or when the
// follower's answer (it restores its state machine before answering) takes
// longer than Timeout per 256 KiB of snapshot.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	c, err := t.client(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(t.lifetime)
	defer cancel()
	// The watchdog ends the call when a step makes no progress in time;
	// fired tells its cancellation apart from other failures.
	var fired atomic.Bool
	watchdog := time.AfterFunc(t.m.cfg.Timeout, func() {
		fired.Store(true)
		cancel()
	})
	defer watchdog.Stop()
	stalled := func(err error) error {
		if fired.Load() && t.lifetime.Err() == nil {
			return fmt.Errorf("transport: %s InstallSnapshot to %s: no progress within %v: %w: %w",
				t.group, target, t.m.cfg.Timeout, ErrStalled, err)
		}
		return t.callErr("InstallSnapshot", target, err)
	}

	stream, err := c.InstallSnapshot(ctx)
	if err != nil {
		return stalled(err)
	}
	first := &raftpb.InstallSnapshotChunk{Kind: &raftpb.InstallSnapshotChunk_Request{
		Request: encodeInstallSnapshotRequest(t.m.ClusterID(), t.group, args),
	}}
	sendErr := stream.Send(first)
	for sendErr == nil {
		watchdog.Reset(t.m.cfg.Timeout)
		// A fresh buffer per chunk: gRPC does not promise that a sent
		// message is no longer referenced once Send returns.
		buf := make([]byte, snapshotChunkBytes)
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			sendErr = stream.Send(&raftpb.InstallSnapshotChunk{Kind: &raftpb.InstallSnapshotChunk_Data{Data: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("transport: %s InstallSnapshot to %s: read snapshot: %w", t.group, target, rerr)
		}
	}
	// io.EOF from Send means the server ended the call; its status comes
	// from CloseAndRecv. Any other Send error is the call's error.
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return stalled(sendErr)
	}
	wait := t.m.cfg.Timeout * time.Duration(args.Size/snapshotTimeoutScale)
	watchdog.Reset(max(wait, t.m.cfg.Timeout))
	out, err := stream.CloseAndRecv()
	if err != nil {
		return stalled(err)
	}
	decodeInstallSnapshotResponse(out, resp)
	return nil
}

// errSnapshotAnswered ends the snapshot reader handed to raft once raft has
// answered (or the group or call is gone): nothing will read the rest.
var errSnapshotAnswered = errors.New("transport: snapshot install already answered")

// InstallSnapshot serves one snapshot stream. Raft reads the snapshot
// from an io.Pipe; this handler's goroutine is the only one touching the
// stream and copies each chunk into the pipe as raft reads, so memory
// holds one chunk at a time and gRPC flow control slows the sender to the
// follower's pace. A helper goroutine, owned and awaited by the handler,
// waits for raft's answer and then closes the pipe's read side so that the
// copy stops even if raft answered before reading everything.
func (s raftServer) InstallSnapshot(stream raftpb.RaftService_InstallSnapshotServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetRequest()
	if req == nil {
		return status.Error(codes.InvalidArgument, "transport: InstallSnapshot: first message holds no request")
	}
	t, err := s.m.route("InstallSnapshot", req.GetClusterId(), req.GetGroup())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	t.pending.Add(1)
	defer t.pending.Add(-1)
	pr, pw := io.Pipe()
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: decodeInstallSnapshotRequest(req), Reader: pr, RespChan: respCh}
	if err := t.enqueue(ctx, rpc, false); err != nil {
		return err
	}

	type outcome struct {
		resp any
		err  error
	}
	answered := make(chan outcome, 1)
	go func() {
		resp, err := t.await(ctx, respCh)
		_ = pr.CloseWithError(errSnapshotAnswered)
		answered <- outcome{resp, err}
	}()

	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			_ = pw.Close()
			break
		}
		if err != nil {
			_ = pw.CloseWithError(err)
			break
		}
		if chunk.GetRequest() != nil {
			_ = pw.CloseWithError(errors.New("transport: InstallSnapshot: second request in stream"))
			break
		}
		if _, err := pw.Write(chunk.GetData()); err != nil {
			break // raft has answered
		}
	}
	o := <-answered
	if o.err != nil {
		return o.err
	}
	r, ok := o.resp.(*raft.InstallSnapshotResponse)
	if !ok {
		return unexpected(o.resp)
	}
	return stream.SendAndClose(encodeInstallSnapshotResponse(r))
}
