// Helpers for the node:test suites: temporary folders, tree snapshots, the ws-daemon binary.
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, lstatSync, readlinkSync, rmSync } from 'node:fs'
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
