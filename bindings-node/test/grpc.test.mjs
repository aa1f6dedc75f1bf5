// The same requests give the same answers in-process and over gRPC (an @grpc/grpc-js client
// against the ws-daemon binary).
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'

import { options, scratch, startServer } from './helpers.mjs'

const require = createRequire(import.meta.url)
const grpc = require('@grpc/grpc-js')
const protoLoader = require('@grpc/proto-loader')
const { Daemon, Status } = require('../wsd.js')

const protos = join(dirname(fileURLToPath(import.meta.url)), '../../proto/protos')

function grpcClient(port) {
  const def = protoLoader.loadSync('wsdaemon/daemon.proto', { includeDirs: [protos], longs: String, enums: String, defaults: false, oneofs: false })
  const pkg = grpc.loadPackageDefinition(def)
  return new pkg.wsdaemon.WorkspaceContentService(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
}

/** Runs one call and returns [status name, reason, response without default-valued fields]. */
function overGrpc(client, method, request) {
  return new Promise((resolve) => {
    client[method](request, (err, response) => {
      if (err) {
        const name = Object.keys(Status).find((k) => Status[k] === err.code)
        return resolve([name, String(err.metadata.get('wsd-error-reason')[0] ?? ''), null])
      }
      const clean = JSON.parse(JSON.stringify(response, (k, v) => (v === false || v === '' ? undefined : v)))
      resolve(['OK', '', clean])
    })
  })
}

async function inProcess(d, method, request) {
  try {
    return ['OK', '', await d[method.charAt(0).toLowerCase() + method.slice(1)](request)]
  } catch (e) {
    return [e.code, e.reason, null]
  }
}

test('in-process and gRPC answers are identical, reasons included', async (t) => {
  const dir = scratch(t)
  const port = await startServer(t, join(dir, 'server'))
  const client = grpcClient(port)
  t.after(() => client.close())
  const d = new Daemon(options(join(dir, 'local')))
  t.after(() => d.close())

  const md = { owner: 'u1', metaId: 'm1' }
  const cases = [
    ['IsWorkspaceExists', { id: 'ws1' }],
    ['InitWorkspace', { id: 'ws1', metadata: md, initializer: { empty: {} } }],
    ['InitWorkspace', { id: 'ws1', metadata: md, initializer: { empty: {} } }],
    ['InitWorkspace', { id: '../x', metadata: md, initializer: { empty: {} } }],
    ['InitWorkspace', { id: 'ws2', initializer: { empty: {} } }],
    ['InitWorkspace', { id: 'ws3', metadata: md, initializer: { backup: {} } }],
    ['InitWorkspace', { id: 'ws4', metadata: md, initializer: { snapshot: { snapshot: 'workspaces/x/snapshot-1.tar@b' } } }],
    ['IsWorkspaceExists', { id: 'ws1' }],
    ['WaitForInit', { id: 'ws1' }],
    ['WaitForInit', { id: 'nope' }],
    ['BackupWorkspace', { id: 'ws1' }],
    ['BackupWorkspace', { id: 'nope' }],
    ['TakeSnapshot', { id: '' }],
    ['DisposeWorkspace', { id: 'ws1', backup: true }],
    ['DisposeWorkspace', { id: 'ws1' }],
    ['DisposeWorkspace', { id: 'never' }],
    ['InitWorkspace', { id: 'ws5', metadata: md, initializer: { backup: {} } }],
    ['IsWorkspaceExists', { id: 'ws5' }],
  ]
  for (const [method, request] of cases) {
    const remote = await overGrpc(client, method, request)
    const local = await inProcess(d, method, request)
    assert.deepEqual(local, remote, `${method} ${JSON.stringify(request)}`)
  }
})
