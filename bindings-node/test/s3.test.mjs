// The in-process daemon on remote storage: backups through a real S3 server (s3s-fs, which checks
// signatures; scripts/test-all.sh installs it and exports WSD_S3S_FS) from inside a Node host.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import test from 'node:test'

import { options, scratch, snapshotTree } from './helpers.mjs'

const require = createRequire(import.meta.url)
const { Daemon, WsdError } = require('../wsd.js')

const ACCESS_KEY = 'wsd-node-access'
const SECRET_KEY = 'wsd-node-secret-0123456789'
const init = (id, metaId) => ({ id, metadata: { owner: 'owner-1', metaId }, initializer: { empty: {} } })

/** Starts s3s-fs on a port it picks itself and resolves to its endpoint once it listens. */
function startS3(t, root) {
  const bin = process.env.WSD_S3S_FS
  assert.ok(bin, 'WSD_S3S_FS is not set: run ./scripts/test-all.sh, which installs s3s-fs and sets it')
  mkdirSync(root, { recursive: true })
  const child = spawn(
    bin,
    ['--host', '127.0.0.1', '--port', '0', '--access-key', ACCESS_KEY, '--secret-key', SECRET_KEY, root],
    { env: { ...process.env, RUST_LOG: 's3s_fs=info', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  t.after(() => child.kill('SIGKILL'))
  return new Promise((resolve, reject) => {
    let seen = ''
    child.stdout.on('data', (chunk) => {
      seen += chunk
      const m = /server is running at (http:\/\/[\d.]+:\d+)/.exec(seen)
      if (m) resolve(m[1])
    })
    child.on('exit', (code) => reject(new Error(`s3s-fs exited with ${code}: ${seen}`)))
  })
}

const s3Options = (dir, area, endpoint, secret = SECRET_KEY) =>
  options(dir, {
    workingArea: join(dir, area),
    storage: {
      backend: 's3',
      partSizeBytes: 5 << 20,
      s3: { endpoint, accessKeyId: ACCESS_KEY, secretAccessKey: secret },
    },
  })

test('backups go through S3 from an in-process daemon and restore on another', async (t) => {
  const dir = scratch(t)
  const endpoint = await startS3(t, join(dir, 's3'))
  const a = new Daemon(s3Options(dir, 'node-a', endpoint))
  t.after(() => a.close())
  await a.initWorkspace(init('ws-a', 'meta-a'))
  const content = join(dir, 'node-a/ws-a')
  mkdirSync(join(content, 'src'), { recursive: true })
  writeFileSync(join(content, 'src/main.rs'), 'fn main() {}\n')
  writeFileSync(join(content, 'blob.bin'), randomBytes(12 << 20))
  const original = snapshotTree(content)

  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const { url } = await a.backupWorkspace({ id: 'ws-a' })
  clearInterval(timer)
  assert.equal(url, 'workspaces/meta-a/full.tar.zst@gitpod-user-owner-1')
  assert.ok(ticks >= 1, 'the event loop was blocked during the upload')
  assert.deepEqual(await a.disposeWorkspace({ id: 'ws-a', backup: true }), {})

  const b = new Daemon(s3Options(dir, 'node-b', endpoint))
  t.after(() => b.close())
  await b.initWorkspace(init('ws-b', 'meta-a'))
  assert.deepEqual(snapshotTree(join(dir, 'node-b/ws-b')), original)
})

test('a wrong S3 secret rejects the backup with DATA_LOSS and a readable reason', async (t) => {
  const dir = scratch(t)
  const endpoint = await startS3(t, join(dir, 's3'))
  const good = new Daemon(s3Options(dir, 'node', endpoint))
  await good.initWorkspace(init('ws', 'meta'))
  await good.close()

  const wrong = new Daemon(s3Options(dir, 'node', endpoint, 'not-the-secret'))
  t.after(() => wrong.close())
  await assert.rejects(wrong.backupWorkspace({ id: 'ws' }), (err) => {
    assert.ok(err instanceof WsdError, `not a WsdError: ${err}`)
    assert.equal(err.code, 'DATA_LOSS', err.message)
    assert.match(err.message, /SignatureDoesNotMatch/)
    assert.doesNotMatch(err.message, /not-the-secret|127\.0\.0\.1/)
    return true
  })
})
