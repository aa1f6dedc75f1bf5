// Types of the facade (wsd.js). Message types and the per-RPC methods are generated in api.d.ts.
import type { ApiMethod } from './index'
import type { CallOptions, DaemonMethods, StatusName } from './api'

export * from './api'
export type { ApiMethod } from './index'

/** gRPC status codes by name. */
export declare const Status: Readonly<Record<StatusName, number>>

/** An error of the daemon. */
export declare class WsdError extends Error {
  /** The gRPC status name, e.g. "NOT_FOUND". */
  readonly code: StatusName
  /** The gRPC status number, e.g. 5. */
  readonly grpcCode: number
  /**
   * A stable identifier of the failure to branch on, e.g. "workspace_not_found" or "invalid_id"
   * (several share a code); the same as the `wsd-error-reason` metadata of the gRPC server.
   */
  readonly reason: string
}

export interface IdMapping {
  containerId: number
  hostId: number
  size: number
}

/** Settings of the daemon, all optional; the same as the server's config file (README "Configuration"). */
export interface DaemonOptions {
  /** Folder of workspace contents, socket folders and state files. */
  workingArea?: string
  storage?: {
    /** "local" (default), an object store ("s3", "gcs", "azure") or "none". */
    backend?: 'local' | 's3' | 'gcs' | 'azure' | 'none'
    localPath?: string
    layout?: 'bucket-per-owner' | 'shared'
    bucketTemplate?: string
    sharedBucket?: string
    /** Create a missing bucket before the first upload (local, S3, Azure; GCS with a project). */
    createBuckets?: boolean
    maxConcurrentUploads?: number
    uploadWaitTimeoutSecs?: number
    partSizeBytes?: number
    /** Parts of one upload sent at once. */
    uploadParallelism?: number
    timeouts?: { requestSecs?: number; connectSecs?: number; readSecs?: number; uploadSecs?: number }
    retry?: { maxRetries?: number; timeoutSecs?: number; initialBackoffMs?: number; maxBackoffMs?: number }
    /** Credentials not given here come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. */
    s3?: {
      endpoint?: string
      region?: string
      virtualHostedStyle?: boolean
      accessKeyId?: string
      secretAccessKey?: string
      sessionToken?: string
      useInstanceMetadata?: boolean
    }
    gcs?: {
      serviceAccountPath?: string
      serviceAccountKey?: string
      useInstanceMetadata?: boolean
      /** Base URL of a non-Google service. */
      endpoint?: string
      /** Project in which missing buckets are created; empty: buckets must exist. */
      project?: string
    }
    azure?: {
      account?: string
      accessKey?: string
      sasToken?: string
      endpoint?: string
      useEmulator?: boolean
      useManagedIdentity?: boolean
    }
  }
  archive?: {
    /** What backups and snapshots are written as (default 'full'). */
    mode?: 'full' | 'chunked' | 'both'
    /** Chunked backups kept per workspace (default 3). */
    keepBackups?: number
    /** Seconds between collections of unreferenced packs (default 3600; 0: never). */
    gcIntervalSecs?: number
    /** Unreferenced packs younger than this many seconds stay (default 86400). */
    gcGraceSecs?: number
    format?: 'zstd' | 'tar'
    zstdLevel?: number
    zstdWorkers?: number
    uidMap?: IdMapping[]
    gidMap?: IdMapping[]
  }
  limits?: {
    initTimeoutSecs?: number
    disposeRecordTtlSecs?: number
    housekeepingIntervalSecs?: number
    orphanMaxAgeSecs?: number
    shutdownGraceSecs?: number
  }
  download?: {
    attempts?: number
    attemptTimeoutSecs?: number
    allowHttp?: boolean
  }
  git?: {
    /** The git executable. */
    binary?: string
    /** Transports a repository URL may use; add "file" to allow local paths. */
    allowedTransports?: string[]
    /** Environment variables passed to git; all others are cleared. */
    passEnv?: string[]
    /** HOME of git calls; empty: a folder in the working area. */
    home?: string
    cloneAttempts?: number
    otsAttempts?: number
    commandTimeoutSecs?: number
  }
  /** The in-workspace service: host ids a workspace's ids may map to (WriteIDMapping). */
  iws?: {
    uidMap?: IdRanges
    gidMap?: IdRanges
    cgroup?: {
      /** Mount point of the cgroup v2 hierarchy; unset: found in /proc/self/mountinfo. */
      v2Mount?: string
    }
    /** The veth pair of SetupPairVeths. */
    network?: {
      /** IPv4 network with room for two hosts (default "10.0.5.0/30"): first host in the container, second inner. */
      cidr?: string
      /** The container's interface to the outside; empty (default): every interface but lo and the pair. */
      outerInterface?: string
    }
  }
  /** Storage quotas (InitWorkspace's storageQuotaBytes). */
  quota?: {
    /** On a btrfs working area whose quotas are off, enable them at start (default false). */
    btrfsEnable?: boolean
  }
  /** Finding workspace containers through containerd (Kubernetes nodes). */
  runtime?: {
    containerd?: {
      /** containerd's socket, e.g. /run/containerd/containerd.sock; unset: no discovery. */
      socket?: string
      /** The kubelet's containerd namespace (default "k8s.io"). */
      namespace?: string
      /** Label names; Gitpod's by default. */
      labels?: {
        workspaceId?: string
        kind?: string
        containerName?: string
        workspaceContainerName?: string
        podName?: string
        podNamespace?: string
      }
      reconnectInitialBackoffMs?: number
      reconnectMaxBackoffMs?: number
      /** How often everything is listed again while connected (default 60). */
      resyncIntervalSecs?: number
    }
  }
  /** Readiness (the server's /ready and gRPC health service). */
  health?: {
    /** Below this much free space in the working area the daemon is not ready (default 1 GiB). */
    minFreeBytes?: number
    /** Time one readiness check may take (default 3000). */
    checkTimeoutMs?: number
    /** How often the gRPC health status is refreshed (default 5). */
    intervalSecs?: number
  }
}

/** Host ids `start .. start + size`. */
export interface IdRange {
  start?: number
  size?: number
}

export interface IdRanges {
  /** Container id 0 maps into this range (default 33333, size 1). */
  rootRange?: IdRange
  /** Every other container id maps into one of these (default 100000, size 70000). */
  userRanges?: IdRange[]
}

export interface Daemon extends DaemonMethods {}

/** The workspace daemon in-process. */
export declare class Daemon {
  constructor(options?: DaemonOptions)
  /** Calls the RPC at `method` with an encoded protobuf request; resolves to the encoded response. */
  call(method: string, request: Uint8Array, options?: CallOptions): Promise<Buffer>
  /** Calls the RPC at `method` with a plain object in the proto3 JSON mapping. */
  callObject<T = unknown>(method: string, request?: object, options?: CallOptions): Promise<T>
  /** Opens the server-streaming RPC at `method` with a plain request object: an async iterator of the response objects until the stream ends. */
  openStream<T = unknown>(method: string, request?: object, options?: CallOptions): AsyncIterableIterator<T>
  /** Lets in-flight work finish and stops the daemon; later calls reject with UNAVAILABLE. */
  close(): Promise<void>
}

/** Every RPC of the contract that answers once. */
export declare const methods: ApiMethod[]

/** Every server-streaming RPC of the contract (each a method of `Daemon` returning an async iterator). */
export declare const streams: ApiMethod[]

/** The version of the daemon library. */
export declare function version(): string
