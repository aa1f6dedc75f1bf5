// Server-streaming RPCs in-process: watchProgress is an async iterator of the reports that
// WatchProgress streams over gRPC, and answers the same as an @grpc/grpc-js client of the server.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'

import { options, scratch, startServer } from './helpers.mjs'

const require = createRequire(import.meta.url)
const grpc = require('@grpc/grpc-js')
const protoLoader = require('@grpc/proto-loader')
const { Daemon, WsdError, streams } = require('../wsd.js')

const protos = join(dirname(fileURLToPath(import.meta.url)), '../../proto/protos')
const init = (id) => ({ id, metadata: { owner: 'u', metaId: `m-${id}` }, initializer: { empty: {} } })

async function collect(iterable) {
  const out = []
  for await (const item of iterable) out.push(item)
  return out
}

test('the streams of the contract are listed and are methods', () => {
  assert.deepEqual(streams.map((m) => m.path), ['/wsdaemon.WorkspaceContentExt/WatchProgress'])
  assert.equal(typeof Daemon.prototype.watchProgress, 'function')
})

test('watchProgress follows a backup to its end without blocking the event loop', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  t.after(() => d.close())

  await assert.rejects(collect(d.watchProgress({ id: 'nope' })), (e) => e instanceof WsdError && e.code === 'NOT_FOUND')
  await assert.rejects(
    collect(d.openStream('/wsdaemon.WorkspaceContentExt/Progress', { id: 'x' })),
    (e) => e.code === 'INVALID_ARGUMENT',
  )

  await d.initWorkspace(init('ws-s'))
  const afterInit = await collect(d.watchProgress({ id: 'ws-s' }))
  assert.equal(afterInit.length, 1)
  assert.equal(afterInit[0].operation, 'init')
  assert.equal(afterInit[0].done, true)

  const big = Buffer.alloc(32 << 20)
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff
  writeFileSync(join(dir, 'area', 'ws-s', 'big.bin'), big)
  // Watched from before it starts: the iterator follows the next operation until it is done.
  const watched = collect(d.watchProgress({ id: 'ws-s', after: afterInit[0].seq }))
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const backup = await d.backupWorkspace({ id: 'ws-s' })
  const reports = await watched
  clearInterval(timer)
  assert.ok(backup.url)
  const last = reports.at(-1)
  assert.equal(last.operation, 'backup')
  assert.equal(last.done, true)
  assert.ok(Number(last.bytesDone) >= 32 << 20, `bytes ${last.bytesDone}`)
  for (let i = 1; i < reports.length; i++) assert.ok(Number(reports[i].seq) > Number(reports[i - 1].seq))
  assert.ok(ticks > 0, 'the event loop ran while the backup was watched')

  // Leaving the loop early ends the stream; a deadline ends a wait with DEADLINE_EXCEEDED.
  for await (const r of d.watchProgress({ id: 'ws-s' })) {
    assert.equal(r.operation, 'backup')
    break
  }
  await assert.rejects(
    collect(d.watchProgress({ id: 'ws-s', after: last.seq }, { timeoutMs: 200 })),
    (e) => e.code === 'DEADLINE_EXCEEDED',
  )
})

test('a watch waiting when the daemon closes rejects with UNAVAILABLE', async (t) => {
  const dir = scratch(t)
  const d = new Daemon(options(dir))
  await d.initWorkspace(init('ws-c'))
  const [first] = await collect(d.watchProgress({ id: 'ws-c' }))
  const waiting = collect(d.watchProgress({ id: 'ws-c', after: first.seq }))
  setTimeout(() => d.close(), 100)
  await assert.rejects(waiting, (e) => e.code === 'UNAVAILABLE')
  await assert.rejects(collect(d.watchProgress({ id: 'ws-c' })), (e) => e.code === 'UNAVAILABLE')
})

test('watchProgress answers as WatchProgress over gRPC', async (t) => {
  const dir = scratch(t)
  const port = await startServer(t, join(dir, 'server'))
  const def = protoLoader.loadSync(['wsdaemon/daemon.proto', 'wsdaemon/ext.proto'], { includeDirs: [protos], longs: String, enums: String, defaults: true, oneofs: false })
  const pkg = grpc.loadPackageDefinition(def)
  const content = new pkg.wsdaemon.WorkspaceContentService(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const ext = new pkg.wsdaemon.WorkspaceContentExt(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.after(() => { content.close(); ext.close() })
  const wire = {
    initWorkspace: (r) => new Promise((resolve, reject) => content.initWorkspace(r, (e, v) => (e ? reject(e) : resolve(v)))),
    watch: async (r) => {
      const out = []
      try {
        for await (const item of ext.watchProgress(r)) out.push(item)
      } catch (e) {
        return { code: grpc.status[e.code] }
      }
      return out
    },
  }
  const d = new Daemon(options(join(dir, 'inproc')))
  t.after(() => d.close())
  const local = {
    initWorkspace: (r) => d.initWorkspace(r),
    watch: async (r) => {
      try {
        return await collect(d.watchProgress(r))
      } catch (e) {
        return { code: e.code }
      }
    },
  }
  const transcript = async (o) => {
    const unknown = await o.watch({ id: 'nope' })
    await o.initWorkspace({ id: 'ws-w', metadata: { owner: 'u', metaId: 'm' }, initializer: { empty: {} } })
    const reports = await o.watch({ id: 'ws-w' })
    return { unknown, reports: reports.map((r) => [r.operation, r.phase, r.done, r.error ?? '']) }
  }
  const want = { unknown: { code: 'NOT_FOUND' }, reports: [['init', 'done', true, '']] }
  assert.deepEqual(await transcript(local), want)
  assert.deepEqual(await transcript(wire), want)
})
