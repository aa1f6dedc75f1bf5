// Latency of IsWorkspaceExists from Node: in-process (the addon) against @grpc/grpc-js over TCP to
// the ws-daemon server, same run. Usage (release builds for meaningful figures):
//   npx napi build --platform --release && WSD_BIN=<target>/release/ws-daemon node bench/bench.mjs [calls]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const grpc = require('@grpc/grpc-js')
const protoLoader = require('@grpc/proto-loader')
const { Daemon } = require('../wsd.js')

const calls = Number(process.argv[2] ?? 20000)
const dir = mkdtempSync(join(tmpdir(), 'wsd-node-bench-'))
const protos = join(dirname(fileURLToPath(import.meta.url)), '../../proto/protos')

function stats(samples) {
  samples.sort((a, b) => a - b)
  return { median: samples[samples.length >> 1], p99: samples[Math.floor(samples.length * 0.99)] }
}

async function measure(n, call) {
  for (let i = 0; i < Math.min(1000, n); i++) await call()
  const samples = new Array(n)
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    await call()
    samples[i] = Number(process.hrtime.bigint() - t) / 1000
  }
  const total = Number(process.hrtime.bigint() - start) / 1e9
  return { ...stats(samples), perSecond: n / total }
}

const port = await new Promise((resolve) => {
  const s = createServer()
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
})
const config = join(dir, 'server.toml')
writeFileSync(config, `working_area = ${JSON.stringify(join(dir, 'server/area'))}\n[storage]\nlocal_path = ${JSON.stringify(join(dir, 'server/storage'))}\n[server]\nlisten = "127.0.0.1:${port}"\nmetrics_listen = ""\n`)
const server = spawn(process.env.WSD_BIN ?? 'ws-daemon', ['--config', config], { stdio: 'ignore' })
for (let i = 0; i < 200; i++) {
  const up = await new Promise((r) => { const s = connect(port, '127.0.0.1', () => { s.end(); r(true) }); s.on('error', () => r(false)) })
  if (up) break
  await new Promise((r) => setTimeout(r, 50))
}

const d = new Daemon({ workingArea: join(dir, 'local/area'), storage: { localPath: join(dir, 'local/storage') } })
const def = protoLoader.loadSync('wsdaemon/daemon.proto', { includeDirs: [protos] })
const client = new (grpc.loadPackageDefinition(def).wsdaemon.WorkspaceContentService)(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
const overGrpc = () => new Promise((resolve, reject) => client.isWorkspaceExists({ id: 'bench' }, (e, r) => (e ? reject(e) : resolve(r))))

const local = await measure(calls, () => d.isWorkspaceExists({ id: 'bench' }))
const bytes = Buffer.from([0x0a, 5, ...Buffer.from('bench')])
const localBytes = await measure(calls, () => d.call('/wsdaemon.WorkspaceContentService/IsWorkspaceExists', bytes))
const remote = await measure(Math.min(calls, 5000), overGrpc)

const row = (name, s) => console.log(`| ${name} | ${s.median.toFixed(1)} | ${s.p99.toFixed(1)} | ${s.perSecond.toFixed(0)} |`)
console.log('| IsWorkspaceExists from Node | median µs | p99 µs | calls/s (sequential) |')
console.log('|---|---|---|---|')
row('in-process, typed method (JSON mapping)', local)
row('in-process, protobuf bytes (call)', localBytes)
row('@grpc/grpc-js over TCP to ws-daemon', remote)
console.log(`\nratio gRPC / in-process median: typed ${(remote.median / local.median).toFixed(1)}x, bytes ${(remote.median / localBytes.median).toFixed(1)}x`)

client.close()
await d.close()
server.kill('SIGTERM')
rmSync(dir, { recursive: true, force: true })
