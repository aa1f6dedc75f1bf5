// The Node surface end to end: round trips, error paths, concurrency, close, the event loop.
import assert from 'node:assert/strict'
import { mkdirSync, symlinkSync, writeFileSync, utimesSync, chmodSync, existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import test from 'node:test'

import { options, scratch, snapshotTree } from './helpers.mjs'

const require = createRequire(import.meta.url)
const { Daemon, WsdError, Status, methods } = require('../wsd.js')

const empty = { empty: {} }
const init = (id, metaId, initializer = empty) => ({ id, metadata: { owner: 'owner-1', metaId }, initializer })

function populate(root) {
  mkdirSync(join(root, 'src/nested/deep'), { recursive: true })
  mkdirSync(join(root, 'empty/dir'), { recursive: true })
  writeFileSync(join(root, 'README.md'), '# hi\n')
  writeFileSync(join(root, 'src/main.rs'), 'fn main() {}\n')
  writeFileSync(join(root, 'src/nested/deep/data.bin'), randomBytes(200_000))
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\n')
  chmodSync(join(root, 'run.sh'), 0o755)
  writeFileSync(join(root, 'name with spaces.txt'), 'x')
  symlinkSync('src/main.rs', join(root, 'link'))
  utimesSync(join(root, 'README.md'), 1_700_000_000.123456, 1_700_000_000.654321)
}

async function rejectsWith(promise, code, reason) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof WsdError, `not a WsdError: ${err}`)
    assert.equal(err.code, code, err.message)
    assert.equal(err.grpcCode, Status[code])
    assert.ok(err.message.length > 0)
    assert.match(err.reason, /^[a-z_]+$/, `reason of ${err.message}`)
    if (reason !== undefined) assert.equal(err.reason, reason, err.message)
    return true
  })
}

test('init, write, backup, dispose, restore and compare', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  assert.deepEqual(await d.initWorkspace(init('ws-a', 'meta-a')), {})
  const content = join(dir, 'area/ws-a')
  populate(content)
  const original = snapshotTree(content)

  const { url } = await d.backupWorkspace({ id: 'ws-a' })
  assert.equal(url, 'workspaces/meta-a/full.tar.zst@gitpod-user-owner-1')
  const snap = await d.takeSnapshot({ id: 'ws-a' })
  assert.match(snap.url, /^workspaces\/meta-a\/snapshot-\d+\.tar\.zst@gitpod-user-owner-1$/)
  assert.deepEqual(await d.disposeWorkspace({ id: 'ws-a', backup: true }), {})
  assert.deepEqual(await d.isWorkspaceExists({ id: 'ws-a' }), {})

  await d.initWorkspace(init('ws-b', 'meta-a', { backup: {} }))
  await d.waitForInit({ id: 'ws-b' })
  assert.deepEqual(snapshotTree(join(dir, 'area/ws-b')), original)
  assert.equal(JSON.parse(readFileSync(join(dir, 'area/ws-b/.gitpod/ready'), 'utf8')).source, 'from-backup')

  await d.initWorkspace(init('ws-c', 'meta-c', { snapshot: { snapshot: snap.url } }))
  assert.deepEqual(snapshotTree(join(dir, 'area/ws-c')), original)
  assert.deepEqual(await d.workspaceState({ id: 'ws-c' }), { state: 'AVAILABLE' })
  const status = await d.snapshotStatus({ url: snap.url })
  assert.deepEqual(Object.keys(status).sort(), ['phase', 'sizeBytes'])
  assert.equal(status.phase, 'DONE')
  assert.ok(Number(status.sizeBytes) > 0, `sizeBytes ${status.sizeBytes}`)
})

test('error paths carry the gRPC status', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  for (const id of ['', '../x', 'a/b']) {
    await rejectsWith(d.initWorkspace(init(id, 'm')), 'INVALID_ARGUMENT', 'invalid_id')
    await rejectsWith(d.isWorkspaceExists({ id }), 'INVALID_ARGUMENT', 'invalid_id')
  }
  await rejectsWith(d.initWorkspace({ id: 'ws', initializer: empty }), 'INVALID_ARGUMENT')
  await rejectsWith(d.initWorkspace({ id: 'ws', metadata: { owner: 'o', metaId: 'm' } }), 'INVALID_ARGUMENT')
  await rejectsWith(d.initWorkspace(init('ws', 'm', { git: { remoteUri: 'ext::sh -c id', config: {} } })), 'INVALID_ARGUMENT')
  await rejectsWith(d.initWorkspace(init('ws', 'm', { snapshot: { snapshot: 'workspaces/m/snapshot-1.tar@b' } })), 'NOT_FOUND')
  await rejectsWith(d.initWorkspace(init('ws', 'm', { backup: {} })), 'FAILED_PRECONDITION')
  await rejectsWith(d.initWorkspace(init('ws', 'm', { download: { files: [{ url: 'http://127.0.0.1:1/x', filePath: 'x', digest: 'sha256:zz' }] } })), 'INVALID_ARGUMENT')
  await rejectsWith(d.waitForInit({ id: 'nope' }), 'NOT_FOUND', 'workspace_not_found')
  await rejectsWith(d.takeSnapshot({ id: 'nope' }), 'NOT_FOUND')
  await rejectsWith(d.backupWorkspace({ id: 'nope' }), 'NOT_FOUND')
  await rejectsWith(d.disposeWorkspace({ id: 'nope' }), 'NOT_FOUND')

  await d.initWorkspace(init('ws', 'm'))
  await rejectsWith(d.initWorkspace(init('ws', 'm')), 'ALREADY_EXISTS', 'workspace_exists')
  await d.initWorkspace({ ...init('ws-off', 'm2'), remoteStorageDisabled: true })
  await rejectsWith(d.backupWorkspace({ id: 'ws-off' }), 'FAILED_PRECONDITION', 'storage_disabled')
  await rejectsWith(d.takeSnapshot({ id: 'ws-off' }), 'FAILED_PRECONDITION')
  await d.disposeWorkspace({ id: 'ws' })
  assert.deepEqual(await d.disposeWorkspace({ id: 'ws' }), {}, 'dispose twice is OK')

  await rejectsWith(d.callObject('/wsdaemon.WorkspaceContentService/IsWorkspaceExists', { id: 42 }), 'INVALID_ARGUMENT')
  await rejectsWith(d.call('/wsdaemon.WorkspaceContentService/IsWorkspaceExists', Buffer.from([0x0a, 0xff])), 'INVALID_ARGUMENT')
  await rejectsWith(d.call('/nope.Service/Nope', Buffer.alloc(0)), 'UNIMPLEMENTED', 'unknown_method')
  await rejectsWith(d.prepareForUserNS({}), 'FAILED_PRECONDITION', 'not_on_workspace_socket')
  // The in-workspace operations act for a caller inside a workspace: only its own socket has one.
  await rejectsWith(d.mountProc({ target: '/proc', pid: 1 }), 'FAILED_PRECONDITION', 'not_on_workspace_socket')
  // Starting fails like a call: a WsdError with code, number and reason, and a message as is.
  assert.throws(() => new Daemon({ workingArea: '' }), (e) => e instanceof WsdError && e.code === 'INVALID_ARGUMENT' && e.grpcCode === 3 && e.reason === 'invalid_argument')
  assert.throws(() => new Daemon({ noSuchOption: 1 }), (e) => e.code === 'INVALID_ARGUMENT' && /^invalid configuration.*no_such_option/.test(e.message))
})

test('protobuf calls take and return bytes', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  const path = '/wsdaemon.WorkspaceContentService/IsWorkspaceExists'
  assert.deepEqual([...(await d.call(path, Buffer.from([0x0a, 0x02, 0x77, 0x73])))], [])
  await d.initWorkspace(init('ws', 'm'))
  assert.deepEqual([...(await d.call(path, Buffer.from([0x0a, 0x02, 0x77, 0x73])))], [0x08, 0x01])
})

test('100 concurrent calls with Promise.all', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  const inits = Array.from({ length: 50 }, (_, i) => d.initWorkspace(init(`ws-${i}`, `m-${i}`)))
  const checks = Array.from({ length: 50 }, (_, i) => d.isWorkspaceExists({ id: `other-${i}` }))
  const results = await Promise.all([...inits, ...checks])
  assert.equal(results.length, 100)
  const exists = await Promise.all(Array.from({ length: 50 }, (_, i) => d.isWorkspaceExists({ id: `ws-${i}` })))
  assert.ok(exists.every((r) => r.exists === true))
  const disposals = await Promise.all(Array.from({ length: 100 }, () => d.disposeWorkspace({ id: 'ws-0', backup: true })))
  assert.ok(disposals.every((r) => JSON.stringify(r) === '{}'))
})

test('calls after close reject cleanly', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  await d.initWorkspace(init('ws', 'm'))
  const inFlight = d.isWorkspaceExists({ id: 'ws' })
  await d.close()
  await inFlight.catch(() => {}) // either answered or refused, never a crash
  await d.close()
  await rejectsWith(d.isWorkspaceExists({ id: 'ws' }), 'UNAVAILABLE', 'shutting_down')
  await rejectsWith(d.call('/wsdaemon.WorkspaceContentService/IsWorkspaceExists', Buffer.alloc(0)), 'UNAVAILABLE')
})

test('the event loop keeps ticking during a long backup', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir, { archive: { zstdLevel: 3, zstdWorkers: 1 } }))
  t.after(() => d.close())
  await d.initWorkspace(init('ws', 'm'))
  const content = join(dir, 'area/ws')
  for (let i = 0; i < 6; i++) writeFileSync(join(content, `blob-${i}.bin`), randomBytes(4 << 20))
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const started = Date.now()
  await d.backupWorkspace({ id: 'ws' })
  const took = Date.now() - started
  clearInterval(timer)
  // A blocked event loop would fire no timer at all until the backup resolved.
  assert.ok(ticks >= 1, `timers fired ${ticks} times during a ${took} ms backup`)
  assert.ok(existsSync(join(dir, 'storage/gitpod-user-owner-1/workspaces/m/full.tar.zst')))
})

test('a timeoutMs that is not a finite number >= 0 is refused, not read as no deadline', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  for (const timeoutMs of [-1, '200', Number.NaN, Infinity]) {
    await rejectsWith(d.isWorkspaceExists({ id: 'ws' }, { timeoutMs }), 'INVALID_ARGUMENT')
  }
  assert.deepEqual(await d.isWorkspaceExists({ id: 'ws' }, { timeoutMs: 1000 }), {})
})

test('a caller deadline ends a wait with DEADLINE_EXCEEDED, not the init', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())
  // A server that accepts and never answers keeps the init SETTING_UP.
  const { createServer } = await import('node:net')
  const sockets = []
  const silent = createServer((s) => sockets.push(s))
  await new Promise((r) => silent.listen(0, '127.0.0.1', r))
  t.after(() => { sockets.forEach((s) => s.destroy()); silent.close() })
  const url = `http://127.0.0.1:${silent.address().port}/never`
  const init = d.initWorkspace(init_('ws-hang', 'm', url)).catch((e) => e)
  for (let i = 0; i < 200 && !(await d.isWorkspaceExists({ id: 'ws-hang' })).exists; i++) {
    await new Promise((r) => setTimeout(r, 10))
  }
  const started = Date.now()
  await rejectsWith(d.waitForInit({ id: 'ws-hang' }, { timeoutMs: 200 }), 'DEADLINE_EXCEEDED')
  assert.ok(Date.now() - started < 5000)
  assert.deepEqual(await d.workspaceState({ id: 'ws-hang' }), { state: 'SETTING_UP' }, 'the init goes on')
  void init
})

function init_(id, metaId, url) {
  return init(id, metaId, { download: { files: [{ url, filePath: 'f', digest: `sha256:${'0'.repeat(64)}` }] } })
}

test('every RPC of the contract has a method', () => {
  // Written out, not derived from `methods`, so a method the facade drops is noticed.
  const expected = [
    'initWorkspace', 'waitForInit', 'isWorkspaceExists', 'takeSnapshot', 'disposeWorkspace',
    'backupWorkspace', 'snapshotStatus', 'workspaceState', 'progress', 'attachContainer', 'detachContainer',
    'prepareForUserNS', 'writeIDMapping',
    'evacuateCGroup', 'mountProc', 'umountProc', 'mountSysfs', 'umountSysfs', 'mountNfs',
    'umountNfs', 'teardown', 'wipingTeardown', 'setupPairVeths', 'workspaceInfo',
  ]
  assert.ok(methods.length >= 24)
  for (const name of expected) assert.equal(typeof Daemon.prototype[name], 'function', name)
  // WorkspaceInfo exists in two services; the facade's method is the first, the other path is
  // reachable through callObject.
  const names = [...new Set(methods.map((m) => m.name.charAt(0).toLowerCase() + m.name.slice(1)))]
  assert.deepEqual(names.sort(), [...expected].sort())
})

test('Status is the daemon table of gRPC codes', () => {
  assert.ok(Object.isFrozen(Status))
  assert.equal(Object.keys(Status).length, 17)
  assert.deepEqual(Object.values(Status), [...Array(17).keys()])
  assert.equal(Status.OK, 0)
  assert.equal(Status.FAILED_PRECONDITION, 9)
  assert.equal(Status.DATA_LOSS, 15)
  assert.equal(Status.UNAUTHENTICATED, 16)
})
