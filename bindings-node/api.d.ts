/* Generated from proto/protos by bindings-node/tests/typescript_types.rs; do not edit.
   Regenerate: WSD_BLESS=1 cargo test -p wsd-node --test typescript_types */

/** contentservice.CloneTargetMode */
export type CloneTargetMode = 'REMOTE_HEAD' | 'REMOTE_COMMIT' | 'REMOTE_BRANCH' | 'LOCAL_BRANCH';

/** contentservice.GitAuthMethod */
export type GitAuthMethod = 'NO_AUTH' | 'BASIC_AUTH' | 'BASIC_AUTH_OTS';

/** iws.FSShiftMethod */
export type FSShiftMethod = 'SHIFTFS' | 'IDMAPPED';

/** wsdaemon.SnapshotStatusResponse.Phase */
export type SnapshotStatusResponsePhase = 'UNKNOWN' | 'IN_PROGRESS' | 'DONE' | 'FAILED';

/** wsdaemon.WorkspaceContentState */
export type WorkspaceContentState = 'NONE' | 'SETTING_UP' | 'AVAILABLE' | 'WRAPPING_UP';

/** contentservice.CompositeInitializer */
export interface CompositeInitializer {
  initializer?: WorkspaceInitializer[]
}

/** contentservice.EmptyInitializer */
export interface EmptyInitializer {
}

/** contentservice.FileDownloadInitializer */
export interface FileDownloadInitializer {
  files?: FileDownloadInitializerFileInfo[]
  targetLocation?: string
}

/** contentservice.FileDownloadInitializer.FileInfo */
export interface FileDownloadInitializerFileInfo {
  url?: string
  filePath?: string
  digest?: string
}

/** contentservice.FromBackupInitializer */
export interface FromBackupInitializer {
  checkoutLocation?: string
  fromVolumeSnapshot?: boolean
}

/** contentservice.GitConfig */
export interface GitConfig {
  customConfig?: { [key: string]: string }
  authentication?: GitAuthMethod
  authUser?: string
  authPassword?: string
  authOts?: string
}

/** contentservice.GitInitializer */
export interface GitInitializer {
  remoteUri?: string
  upstreamRemoteUri?: string
  targetMode?: CloneTargetMode
  cloneTaget?: string
  checkoutLocation?: string
  config?: GitConfig
  fullClone?: boolean
}

/** contentservice.GitStatus */
export interface GitStatus {
  branch?: string
  latestCommit?: string
  uncommitedFiles?: string[]
  untrackedFiles?: string[]
  unpushedCommits?: string[]
  totalUncommitedFiles?: string | number
  totalUntrackedFiles?: string | number
  totalUnpushedCommits?: string | number
}

/** contentservice.PrebuildInitializer */
export interface PrebuildInitializer {
  prebuild?: SnapshotInitializer
  git?: GitInitializer[]
}

/** contentservice.SnapshotInitializer */
export interface SnapshotInitializer {
  snapshot?: string
  fromVolumeSnapshot?: boolean
}

/** contentservice.WorkspaceInitializer */
export interface WorkspaceInitializer {
  empty?: EmptyInitializer
  git?: GitInitializer
  snapshot?: SnapshotInitializer
  prebuild?: PrebuildInitializer
  composite?: CompositeInitializer
  download?: FileDownloadInitializer
  backup?: FromBackupInitializer
}

/** iws.Cpu */
export interface Cpu {
  used?: string | number
  limit?: string | number
}

/** iws.EvacuateCGroupRequest */
export interface EvacuateCGroupRequest {
}

/** iws.EvacuateCGroupResponse */
export interface EvacuateCGroupResponse {
}

/** iws.Memory */
export interface Memory {
  used?: string | number
  limit?: string | number
}

/** iws.MountNfsRequest */
export interface MountNfsRequest {
  source?: string
  target?: string
  args?: string
  pid?: string | number
}

/** iws.MountNfsResponse */
export interface MountNfsResponse {
}

/** iws.MountProcRequest */
export interface MountProcRequest {
  target?: string
  pid?: string | number
}

/** iws.MountProcResponse */
export interface MountProcResponse {
}

/** iws.PrepareForUserNSRequest */
export interface PrepareForUserNSRequest {
}

/** iws.PrepareForUserNSResponse */
export interface PrepareForUserNSResponse {
  fsShift?: FSShiftMethod
  persistentVolumeClaim?: boolean
}

/** iws.Resources */
export interface Resources {
  cpu?: Cpu
  memory?: Memory
}

/** iws.SetupPairVethsRequest */
export interface SetupPairVethsRequest {
  pid?: string | number
}

/** iws.SetupPairVethsResponse */
export interface SetupPairVethsResponse {
}

/** iws.TeardownRequest */
export interface TeardownRequest {
}

/** iws.TeardownResponse */
export interface TeardownResponse {
  success?: boolean
}

/** iws.UmountNfsRequest */
export interface UmountNfsRequest {
  target?: string
  pid?: string | number
}

/** iws.UmountNfsResponse */
export interface UmountNfsResponse {
}

/** iws.UmountProcRequest */
export interface UmountProcRequest {
  target?: string
  pid?: string | number
}

/** iws.UmountProcResponse */
export interface UmountProcResponse {
}

/** iws.WipingTeardownRequest */
export interface WipingTeardownRequest {
  doWipe?: boolean
}

/** iws.WipingTeardownResponse */
export interface WipingTeardownResponse {
  success?: boolean
}

/** iws.WorkspaceInfoRequest */
export interface WorkspaceInfoRequest {
}

/** iws.WorkspaceInfoResponse */
export interface WorkspaceInfoResponse {
  resources?: Resources
}

/** iws.WriteIDMappingRequest */
export interface WriteIDMappingRequest {
  pid?: string | number
  gid?: boolean
  mapping?: WriteIDMappingRequestMapping[]
}

/** iws.WriteIDMappingRequest.Mapping */
export interface WriteIDMappingRequestMapping {
  containerId?: number
  hostId?: number
  size?: number
}

/** iws.WriteIDMappingResponse */
export interface WriteIDMappingResponse {
  message?: string
  errorCode?: number
}

/** wsdaemon.AttachContainerRequest */
export interface AttachContainerRequest {
  id?: string
  pid?: string | number
  cgroupPath?: string
}

/** wsdaemon.AttachContainerResponse */
export interface AttachContainerResponse {
}

/** wsdaemon.BackupWorkspaceRequest */
export interface BackupWorkspaceRequest {
  id?: string
}

/** wsdaemon.BackupWorkspaceResponse */
export interface BackupWorkspaceResponse {
  url?: string
}

/** wsdaemon.DetachContainerRequest */
export interface DetachContainerRequest {
  id?: string
}

/** wsdaemon.DetachContainerResponse */
export interface DetachContainerResponse {
}

/** wsdaemon.DisposeWorkspaceRequest */
export interface DisposeWorkspaceRequest {
  id?: string
  backup?: boolean
  backupLogs?: boolean
}

/** wsdaemon.DisposeWorkspaceResponse */
export interface DisposeWorkspaceResponse {
  gitStatus?: GitStatus
}

/** wsdaemon.InitWorkspaceRequest */
export interface InitWorkspaceRequest {
  id?: string
  metadata?: WorkspaceMetadata
  initializer?: WorkspaceInitializer
  remoteStorageDisabled?: boolean
  storageQuotaBytes?: string | number
}

/** wsdaemon.InitWorkspaceResponse */
export interface InitWorkspaceResponse {
}

/** wsdaemon.IsWorkspaceExistsRequest */
export interface IsWorkspaceExistsRequest {
  id?: string
}

/** wsdaemon.IsWorkspaceExistsResponse */
export interface IsWorkspaceExistsResponse {
  exists?: boolean
}

/** wsdaemon.ProgressRequest */
export interface ProgressRequest {
  id?: string
  after?: string | number
  waitMs?: number
}

/** wsdaemon.ProgressResponse */
export interface ProgressResponse {
  seq?: string | number
  operation?: string
  phase?: string
  bytesDone?: string | number
  bytesTotal?: string | number
  filesDone?: string | number
  filesTotal?: string | number
  elapsedSecs?: number
  done?: boolean
  error?: string
}

/** wsdaemon.SnapshotStatusRequest */
export interface SnapshotStatusRequest {
  url?: string
}

/** wsdaemon.SnapshotStatusResponse */
export interface SnapshotStatusResponse {
  phase?: SnapshotStatusResponsePhase
  error?: string
  sizeBytes?: string | number
}

/** wsdaemon.TakeSnapshotRequest */
export interface TakeSnapshotRequest {
  id?: string
  returnImmediately?: boolean
}

/** wsdaemon.TakeSnapshotResponse */
export interface TakeSnapshotResponse {
  url?: string
}

/** wsdaemon.WaitForInitRequest */
export interface WaitForInitRequest {
  id?: string
}

/** wsdaemon.WaitForInitResponse */
export interface WaitForInitResponse {
}

/** wsdaemon.WorkspaceMetadata */
export interface WorkspaceMetadata {
  owner?: string
  metaId?: string
}

/** wsdaemon.WorkspaceStateRequest */
export interface WorkspaceStateRequest {
  id?: string
}

/** wsdaemon.WorkspaceStateResponse */
export interface WorkspaceStateResponse {
  state?: WorkspaceContentState
}

/** gRPC status names (`WsdError.code`), in wire-number order. */
export type StatusName = 'OK' | 'CANCELLED' | 'UNKNOWN' | 'INVALID_ARGUMENT' | 'DEADLINE_EXCEEDED' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'PERMISSION_DENIED' | 'RESOURCE_EXHAUSTED' | 'FAILED_PRECONDITION' | 'ABORTED' | 'OUT_OF_RANGE' | 'UNIMPLEMENTED' | 'INTERNAL' | 'UNAVAILABLE' | 'DATA_LOSS' | 'UNAUTHENTICATED';

/** Options of one call. */
export interface CallOptions {
  /** The caller's deadline in milliseconds: waits (e.g. WaitForInit) end with DEADLINE_EXCEEDED; started work goes on. */
  timeoutMs?: number
}

/** One async method per RPC of the contract; RPCs this daemon does not serve reject with UNIMPLEMENTED. */
export interface DaemonMethods {
  /** /wsdaemon.WorkspaceContentService/InitWorkspace */
  initWorkspace(request?: InitWorkspaceRequest, options?: CallOptions): Promise<InitWorkspaceResponse>
  /** /wsdaemon.WorkspaceContentService/WaitForInit */
  waitForInit(request?: WaitForInitRequest, options?: CallOptions): Promise<WaitForInitResponse>
  /** /wsdaemon.WorkspaceContentService/IsWorkspaceExists */
  isWorkspaceExists(request?: IsWorkspaceExistsRequest, options?: CallOptions): Promise<IsWorkspaceExistsResponse>
  /** /wsdaemon.WorkspaceContentService/TakeSnapshot */
  takeSnapshot(request?: TakeSnapshotRequest, options?: CallOptions): Promise<TakeSnapshotResponse>
  /** /wsdaemon.WorkspaceContentService/DisposeWorkspace */
  disposeWorkspace(request?: DisposeWorkspaceRequest, options?: CallOptions): Promise<DisposeWorkspaceResponse>
  /** /wsdaemon.WorkspaceContentService/BackupWorkspace */
  backupWorkspace(request?: BackupWorkspaceRequest, options?: CallOptions): Promise<BackupWorkspaceResponse>
  /** /wsdaemon.WorkspaceContentExt/SnapshotStatus */
  snapshotStatus(request?: SnapshotStatusRequest, options?: CallOptions): Promise<SnapshotStatusResponse>
  /** /wsdaemon.WorkspaceContentExt/WorkspaceState */
  workspaceState(request?: WorkspaceStateRequest, options?: CallOptions): Promise<WorkspaceStateResponse>
  /** /wsdaemon.WorkspaceContentExt/Progress */
  progress(request?: ProgressRequest, options?: CallOptions): Promise<ProgressResponse>
  /** /wsdaemon.WorkspaceContentExt/WatchProgress */
  watchProgress(request?: ProgressRequest, options?: CallOptions): AsyncIterableIterator<ProgressResponse>
  /** /wsdaemon.WorkspaceRuntime/AttachContainer */
  attachContainer(request?: AttachContainerRequest, options?: CallOptions): Promise<AttachContainerResponse>
  /** /wsdaemon.WorkspaceRuntime/DetachContainer */
  detachContainer(request?: DetachContainerRequest, options?: CallOptions): Promise<DetachContainerResponse>
  /** /iws.InWorkspaceService/PrepareForUserNS (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  prepareForUserNS(request?: PrepareForUserNSRequest, options?: CallOptions): Promise<PrepareForUserNSResponse>
  /** /iws.InWorkspaceService/WriteIDMapping (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  writeIDMapping(request?: WriteIDMappingRequest, options?: CallOptions): Promise<WriteIDMappingResponse>
  /** /iws.InWorkspaceService/EvacuateCGroup (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  evacuateCGroup(request?: EvacuateCGroupRequest, options?: CallOptions): Promise<EvacuateCGroupResponse>
  /** /iws.InWorkspaceService/MountProc (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  mountProc(request?: MountProcRequest, options?: CallOptions): Promise<MountProcResponse>
  /** /iws.InWorkspaceService/UmountProc (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  umountProc(request?: UmountProcRequest, options?: CallOptions): Promise<UmountProcResponse>
  /** /iws.InWorkspaceService/MountSysfs (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  mountSysfs(request?: MountProcRequest, options?: CallOptions): Promise<MountProcResponse>
  /** /iws.InWorkspaceService/UmountSysfs (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  umountSysfs(request?: UmountProcRequest, options?: CallOptions): Promise<UmountProcResponse>
  /** /iws.InWorkspaceService/MountNfs (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  mountNfs(request?: MountNfsRequest, options?: CallOptions): Promise<MountNfsResponse>
  /** /iws.InWorkspaceService/UmountNfs (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  umountNfs(request?: UmountNfsRequest, options?: CallOptions): Promise<UmountNfsResponse>
  /** /iws.InWorkspaceService/Teardown (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  teardown(request?: TeardownRequest, options?: CallOptions): Promise<TeardownResponse>
  /** /iws.InWorkspaceService/WipingTeardown (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  wipingTeardown(request?: WipingTeardownRequest, options?: CallOptions): Promise<WipingTeardownResponse>
  /** /iws.InWorkspaceService/SetupPairVeths (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  setupPairVeths(request?: SetupPairVethsRequest, options?: CallOptions): Promise<SetupPairVethsResponse>
  /** /iws.InWorkspaceService/WorkspaceInfo (served on a workspace's own socket; in-process it rejects with FAILED_PRECONDITION) */
  workspaceInfo(request?: WorkspaceInfoRequest, options?: CallOptions): Promise<WorkspaceInfoResponse>
}
