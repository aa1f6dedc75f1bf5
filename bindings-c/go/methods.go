package wsd

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"wsdaemon.dev/wsd/api/wsdaemon"
)

// call is the one generic typed call: encode, invoke, decode into a new Resp.
func call[Resp any, PResp interface {
	*Resp
	proto.Message
}](ctx context.Context, d *Daemon, method string, req proto.Message) (PResp, error) {
	resp := PResp(new(Resp))
	if err := d.invokeMessage(ctx, method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// invokeMessage encodes req, calls method and decodes the response into reply.
func (d *Daemon) invokeMessage(ctx context.Context, method string, req, reply proto.Message) error {
	in, err := proto.Marshal(req)
	if err != nil {
		return &Error{Code: codes.Internal, Message: "encoding the request: " + err.Error(), Reason: reasonInternal}
	}
	out, err := d.invoke(ctx, method, in)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(out, reply); err != nil {
		return &Error{Code: codes.Internal, Message: "decoding the response: " + err.Error(), Reason: reasonInternal}
	}
	return nil
}

// InitWorkspace initializes a new workspace folder in the working area.
func (d *Daemon) InitWorkspace(ctx context.Context, req *wsdaemon.InitWorkspaceRequest) (*wsdaemon.InitWorkspaceResponse, error) {
	return call[wsdaemon.InitWorkspaceResponse](ctx, d, wsdaemon.WorkspaceContentService_InitWorkspace_FullMethodName, req)
}

// WaitForInit waits until a workspace is fully initialized (or its init failed).
func (d *Daemon) WaitForInit(ctx context.Context, req *wsdaemon.WaitForInitRequest) (*wsdaemon.WaitForInitResponse, error) {
	return call[wsdaemon.WaitForInitResponse](ctx, d, wsdaemon.WorkspaceContentService_WaitForInit_FullMethodName, req)
}

// IsWorkspaceExists tells whether the daemon knows a workspace.
func (d *Daemon) IsWorkspaceExists(ctx context.Context, req *wsdaemon.IsWorkspaceExistsRequest) (*wsdaemon.IsWorkspaceExistsResponse, error) {
	return call[wsdaemon.IsWorkspaceExistsResponse](ctx, d, wsdaemon.WorkspaceContentService_IsWorkspaceExists_FullMethodName, req)
}

// TakeSnapshot creates a snapshot of a workspace.
func (d *Daemon) TakeSnapshot(ctx context.Context, req *wsdaemon.TakeSnapshotRequest) (*wsdaemon.TakeSnapshotResponse, error) {
	return call[wsdaemon.TakeSnapshotResponse](ctx, d, wsdaemon.WorkspaceContentService_TakeSnapshot_FullMethodName, req)
}

// DisposeWorkspace cleans up a workspace, possibly after taking a final backup.
func (d *Daemon) DisposeWorkspace(ctx context.Context, req *wsdaemon.DisposeWorkspaceRequest) (*wsdaemon.DisposeWorkspaceResponse, error) {
	return call[wsdaemon.DisposeWorkspaceResponse](ctx, d, wsdaemon.WorkspaceContentService_DisposeWorkspace_FullMethodName, req)
}

// BackupWorkspace creates a backup of a workspace.
func (d *Daemon) BackupWorkspace(ctx context.Context, req *wsdaemon.BackupWorkspaceRequest) (*wsdaemon.BackupWorkspaceResponse, error) {
	return call[wsdaemon.BackupWorkspaceResponse](ctx, d, wsdaemon.WorkspaceContentService_BackupWorkspace_FullMethodName, req)
}

// SnapshotStatus tells the outcome of a snapshot.
func (d *Daemon) SnapshotStatus(ctx context.Context, req *wsdaemon.SnapshotStatusRequest) (*wsdaemon.SnapshotStatusResponse, error) {
	return call[wsdaemon.SnapshotStatusResponse](ctx, d, wsdaemon.WorkspaceContentExt_SnapshotStatus_FullMethodName, req)
}

// WorkspaceState tells the content state of a workspace.
func (d *Daemon) WorkspaceState(ctx context.Context, req *wsdaemon.WorkspaceStateRequest) (*wsdaemon.WorkspaceStateResponse, error) {
	return call[wsdaemon.WorkspaceStateResponse](ctx, d, wsdaemon.WorkspaceContentExt_WorkspaceState_FullMethodName, req)
}

// Progress reports the running (or last) init, backup or snapshot of a workspace; with After and
// WaitMs it is a long poll that answers when something changed after the report numbered After.
func (d *Daemon) Progress(ctx context.Context, req *wsdaemon.ProgressRequest) (*wsdaemon.ProgressResponse, error) {
	return call[wsdaemon.ProgressResponse](ctx, d, wsdaemon.WorkspaceContentExt_Progress_FullMethodName, req)
}

// WatchProgress yields what Progress reports, each change once, until the operation is done (the
// stream of the gRPC method WatchProgress). The sequence ends after the last report, or after
// yielding the error that ended it (also the end of ctx); breaking out of the loop ends the watch.
//
//	for report, err := range d.WatchProgress(ctx, &wsdaemon.ProgressRequest{Id: "ws1"}) {
//		if err != nil { ... }
//		fmt.Println(report.Phase, report.BytesDone)
//	}
func (d *Daemon) WatchProgress(ctx context.Context, req *wsdaemon.ProgressRequest) iter.Seq2[*wsdaemon.ProgressResponse, error] {
	return func(yield func(*wsdaemon.ProgressResponse, error) bool) {
		if ctx == nil {
			ctx = context.Background()
		}
		stream := &clientStream{ctx: ctx, d: d, method: wsdaemon.WorkspaceContentExt_WatchProgress_FullMethodName}
		defer stream.free()
		if err := stream.SendMsg(req); err != nil {
			yield(nil, err)
			return
		}
		for {
			report := new(wsdaemon.ProgressResponse)
			err := stream.RecvMsg(report)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(report, nil) {
				return
			}
		}
	}
}

// AttachContainer ties a workspace to its container's init process (a PID in the daemon's PID
// namespace); the in-workspace operations act on that container.
func (d *Daemon) AttachContainer(ctx context.Context, req *wsdaemon.AttachContainerRequest) (*wsdaemon.AttachContainerResponse, error) {
	return call[wsdaemon.AttachContainerResponse](ctx, d, wsdaemon.WorkspaceRuntime_AttachContainer_FullMethodName, req)
}

// DetachContainer ends a workspace's container attachment; it is idempotent.
func (d *Daemon) DetachContainer(ctx context.Context, req *wsdaemon.DetachContainerRequest) (*wsdaemon.DetachContainerResponse, error) {
	return call[wsdaemon.DetachContainerResponse](ctx, d, wsdaemon.WorkspaceRuntime_DetachContainer_FullMethodName, req)
}
