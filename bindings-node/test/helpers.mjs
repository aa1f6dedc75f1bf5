// Helpers for the node:test suites: temporary folders, tree snapshots, the ws-daemon binary and a
// server process of it.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, lstatSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'

export function scratch(t) {
  const dir = mkdtempSync(join(tmpdir(), 'wsd-node-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function options(dir, extra = {}) {
  return { workingArea: join(dir, 'area'), storage: { localPath: join(dir, 'storage') }, limits: { shutdownGraceSecs: 1 }, ...extra }
}

/** Every entry below root: type, mode, size, content hash, mtime (ns), link target. */
export function snapshotTree(root, skip = ['.gitpod']) {
  const out = {}
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      const rel = relative(root, path)
      if (skip.includes(rel)) continue
      const st = lstatSync(path, { bigint: true })
      const entry = { mode: Number(st.mode & 0o7777n), mtimeNs: String(st.mtimeNs) }
      if (st.isSymbolicLink()) entry.link = readlinkSync(path)
      else if (st.isDirectory()) entry.dir = true
      else entry.sha256 = createHash('sha256').update(readFileSync(path)).digest('hex')
      out[rel] = entry
      if (st.isDirectory()) walk(path)
    }
  }
  walk(root)
  return out
}

/** The ws-daemon binary: $WSD_BIN, else the debug build in the cargo target folder. */
export function daemonBinary() {
  const candidates = [
    process.env.WSD_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, 'debug', 'ws-daemon'),
    join(process.env.HOME ?? '', '.cache/ws-daemon/target/debug/ws-daemon'),
  ].filter(Boolean)
  const found = candidates.find((c) => existsSync(c))
  if (!found) throw new Error(`ws-daemon binary not found (set WSD_BIN); tried ${candidates.join(', ')}`)
  return found
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
    srv.on('error', reject)
  })
}

async function waitForPort(port, child) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`ws-daemon exited with ${child.exitCode}`)
    const ok = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('ws-daemon did not listen')
}

/** Runs the ws-daemon binary on a free port with its own folders; answers the port once it listens. */
export async function startServer(t, dir) {
  const port = await freePort()
  mkdirSync(dir, { recursive: true })
  const config = join(dir, 'config.toml')
  writeFileSync(config, `working_area = ${JSON.stringify(join(dir, 'area'))}\n[storage]\nlocal_path = ${JSON.stringify(join(dir, 'storage'))}\n[limits]\nshutdown_grace_secs = 1\n[server]\nlisten = "127.0.0.1:${port}"\nmetrics_listen = ""\n`)
  const child = spawn(daemonBinary(), ['--config', config], { stdio: ['ignore', 'ignore', 'inherit'] })
  t.after(() => child.kill('SIGKILL'))
  await waitForPort(port, child)
  return port
}
