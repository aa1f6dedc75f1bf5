// The in-workspace service of an embedded daemon (as root): the addon serves the workspace's
// own socket from inside this Node process, and a process inside a stand-in container calls it.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'

import { options } from './helpers.mjs'
import { callIws } from './iws-client.mjs'

const require = createRequire(import.meta.url)
const { Daemon, WsdError } = require('../wsd.js')

const client = join(dirname(fileURLToPath(import.meta.url)), 'iws-client.mjs')
const needsRoot = process.getuid() !== 0 ? 'skipped: needs root (namespaces, mounts)' : false

/**
 * A stand-in workspace container: `sleep` as PID 1 of new PID, mount and network namespaces with
 * private propagation, sharing the host's root folder. Returns the unshare process and the host
 * PID of the container's init.
 */
async function startContainer() {
  const unshare = spawn('unshare', ['--fork', '--pid', '--mount', '--net', '--propagation', 'private', '--mount-proc', '--kill-child', 'sleep', '600'], { stdio: 'ignore' })
  const children = `/proc/${unshare.pid}/task/${unshare.pid}/children`
  for (let i = 0; i < 500; i++) {
    try {
      const found = readFileSync(children, 'utf8').trim().split(/\s+/)[0]
      // The child shows before it has entered its namespaces: wait until it runs `sleep`.
      if (found && readFileSync(`/proc/${found}/comm`, 'utf8').trim() === 'sleep') return { unshare, init: Number(found) }
    } catch {}
    if (unshare.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 10))
  }
  unshare.kill('SIGKILL')
  throw new Error('unshare started no container')
}

/**
 * Kills the container's init and lets unshare, which waits for it, reap it and exit (killed
 * first, unshare would leave the dying init to the host's PID 1, which may reap it late).
 */
async function stopContainer({ unshare, init }) {
  try { process.kill(init, 'SIGKILL') } catch {}
  if (unshare.exitCode === null && unshare.signalCode === null) {
    const exited = new Promise((resolve) => unshare.once('exit', resolve))
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())])
  }
  unshare.kill('SIGKILL')
}

/** Runs the socket client inside the container (`nsenter -a` into all its namespaces). */
function callFromInside(init, socket, method, request) {
  return new Promise((resolve, reject) => {
    const args = ['-t', String(init), '-a', process.execPath, client, socket, method, JSON.stringify(request)]
    execFile('nsenter', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`client inside the container failed: ${err.message}\n${stderr}`))
      resolve(JSON.parse(stdout))
    })
  })
}

/** The names in `dir` as the container's init sees it. */
function listing(init, dir) {
  try {
    return readdirSync(`/proc/${init}/root${dir}`).sort()
  } catch {
    return []
  }
}

test('a process inside a container calls the embedded daemon on the workspace socket', { skip: needsRoot }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsd-node-iws-'))
  let d, container
  t.after(async () => {
    if (container) await stopContainer(container)
    if (d) await d.close()
    rmSync(dir, { recursive: true, force: true })
  })
  d = new Daemon(options(dir))
  await d.initWorkspace({ id: 'ws-iws', metadata: { owner: 'o', metaId: 'm-iws' }, initializer: { empty: {} } })
  const socket = join(dir, 'area/ws-iws-daemon/daemon.sock')
  container = await startContainer()
  await d.attachContainer({ id: 'ws-iws', pid: String(container.init), cgroupPath: '' })
  const target = join(dir, 'proc-target')
  mkdirSync(target)

  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  t.after(() => clearInterval(timer))

  // From inside the container: mounted, a proc of the container's PID namespace.
  let started = Date.now()
  const mounted = await callFromInside(container.init, socket, 'MountProc', { target, pid: 1 })
  const mountMs = Date.now() - started
  assert.deepEqual(mounted, { code: 'OK', reason: '', message: '' })
  const names = listing(container.init, target)
  assert.deepEqual(names.filter((n) => /^\d+$/.test(n)), ['1'], `only the container's processes: ${names}`)
  assert.deepEqual(readdirSync(target), [], 'the host sees nothing')
  const ticksDuringMount = ticks

  // The same call from this (host) process over the same socket: not a process of the container.
  const fromHost = await callIws(socket, 'MountProc', { target, pid: 1 })
  assert.equal(fromHost.code, 'PERMISSION_DENIED', fromHost.message)
  assert.equal(fromHost.reason, 'permission_denied')

  // In-process: no caller identity at all.
  await assert.rejects(d.mountProc({ target, pid: 1 }), (err) => {
    assert.ok(err instanceof WsdError, `not a WsdError: ${err}`)
    assert.equal(err.code, 'FAILED_PRECONDITION', err.message)
    assert.equal(err.reason, 'not_on_workspace_socket')
    assert.match(err.message, /served only on the workspace's own socket/)
    return true
  })

  started = Date.now()
  const unmounted = await callFromInside(container.init, socket, 'UmountProc', { target, pid: 1 })
  const umountMs = Date.now() - started
  assert.deepEqual(unmounted, { code: 'OK', reason: '', message: '' })
  assert.deepEqual(listing(container.init, target), [], 'unmounted')
  clearInterval(timer)

  // The calls from inside take a Node start-up each (100 ms or more): a blocked event loop would
  // fire no timer during them.
  assert.ok(ticksDuringMount >= 1, `timers fired ${ticksDuringMount} times during a ${mountMs} ms MountProc`)
  assert.ok(ticks > ticksDuringMount, `timers fired ${ticks - ticksDuringMount} times after the mount (UmountProc took ${umountMs} ms)`)
  t.diagnostic(`MountProc from inside ${mountMs} ms, UmountProc ${umountMs} ms, ${ticks} timer ticks`)
})
