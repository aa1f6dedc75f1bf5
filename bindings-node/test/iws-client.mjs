// A minimal client of a workspace's own socket (iws.InWorkspaceService over @grpc/grpc-js), for
// the iws test: imported by the test process, and run as a program inside a test container:
//   node iws-client.mjs <socket> <Method> <request as JSON>
// prints one JSON line {code, reason, message, response}; code is the status name, 'OK' on
// success; response is the answer as an object (camelCase fields, 64-bit numbers as strings,
// enums by name; fields left at their default are left out), null on failure.
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const grpc = require('@grpc/grpc-js')
const protoLoader = require('@grpc/proto-loader')

const protos = join(dirname(fileURLToPath(import.meta.url)), '../../proto/protos')

/**
 * Calls `method` (its name in the proto, e.g. `PrepareForUserNS`) of iws.InWorkspaceService on
 * the unix socket `socket`; resolves (never rejects) to {code, reason, message, response}.
 */
export function callIws(socket, method, request) {
  const def = protoLoader.loadSync('iws/workspace_daemon.proto', { includeDirs: [protos], longs: String, enums: String, defaults: false })
  const { iws } = grpc.loadPackageDefinition(def)
  const client = new iws.InWorkspaceService(`unix:${socket}`, grpc.credentials.createInsecure())
  if (typeof client[method] !== 'function') {
    client.close()
    return Promise.resolve({ code: 'UNIMPLEMENTED', reason: '', message: `no method ${method} in iws.InWorkspaceService`, response: null })
  }
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 30_000 }, (err, response) => {
      client.close()
      if (!err) return resolve({ code: 'OK', reason: '', message: '', response })
      const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) ?? String(err.code)
      resolve({ code, reason: String(err.metadata?.get('wsd-error-reason')[0] ?? ''), message: err.details ?? err.message, response: null })
    })
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [socket, method, request] = process.argv.slice(2)
  const result = await callIws(socket, method, JSON.parse(request))
  process.stdout.write(JSON.stringify(result) + '\n')
}
