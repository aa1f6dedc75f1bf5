// Type-checked by `tsc --noEmit -p test` (run by types.test.mjs): the API as a TypeScript user sees it.
import { Daemon, WsdError, Status, type InitWorkspaceRequest, type IsWorkspaceExistsResponse, type StatusName } from '../wsd'

async function main(): Promise<void> {
  const d = new Daemon({ workingArea: '/tmp/wsd-example/area', storage: { backend: 'local', localPath: '/tmp/wsd-example/storage' } })
  const req: InitWorkspaceRequest = {
    id: 'ws1',
    metadata: { owner: 'u1', metaId: 'm1' },
    initializer: { download: { files: [{ url: 'https://example.invalid/f', filePath: 'f', digest: 'sha256:00' }], targetLocation: '/' } },
    storageQuotaBytes: '0',
  }
  await d.initWorkspace(req)
  const exists: IsWorkspaceExistsResponse = await d.isWorkspaceExists({ id: 'ws1' }, { timeoutMs: 1000 })
  const flag: boolean | undefined = exists.exists
  const { url } = await d.backupWorkspace({ id: 'ws1' })
  const state = (await d.workspaceState({ id: 'ws1' })).state
  const known: 'NONE' | 'SETTING_UP' | 'AVAILABLE' | 'WRAPPING_UP' | undefined = state
  const disposed = await d.disposeWorkspace({ id: 'ws1', backup: true, backupLogs: false })
  const branch: string | undefined = disposed.gitStatus?.branch
  const bytes: Buffer = await d.call('/wsdaemon.WorkspaceContentService/IsWorkspaceExists', new Uint8Array([0x0a, 0x01, 0x61]))
  try {
    await d.waitForInit({ id: 'nope' })
  } catch (e) {
    if (e instanceof WsdError && e.grpcCode === Status.NOT_FOUND && e.code === 'NOT_FOUND') console.log('not found')
    if (e instanceof WsdError && e.reason === 'workspace_not_found') console.log('no such workspace')
    const name: StatusName | undefined = e instanceof WsdError ? e.code : undefined
    console.log(name)
  }
  // @ts-expect-error: ids are strings
  await d.isWorkspaceExists({ id: 42 })
  // @ts-expect-error: unknown enum names are refused by the types
  await d.workspaceState({ id: 'x' }).then((s) => s.state === 'GONE')
  for await (const report of d.watchProgress({ id: 'ws1', after: '0' })) {
    const done: boolean | undefined = report.done
    console.log(report.phase, report.bytesDone, done)
  }
  // @ts-expect-error: a stream is iterated, not awaited as one response
  await d.watchProgress({ id: 'ws1' }).then((r) => r.phase)
  console.log(flag, url, known, branch, bytes.length)
  await d.close()
}

void main
