// The in-workspace service of an embedded daemon (as root): the addon serves the workspace's
// own socket from inside this Node process, and a process inside a stand-in container calls it.
import assert from 'node:assert/strict'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
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
/** The repository: the client, its node_modules and the protos it loads, bound into a rooted container. */
const repository = join(dirname(fileURLToPath(import.meta.url)), '../..')
const needsRoot = process.getuid() !== 0 ? 'skipped: needs root (namespaces, mounts)' : false

/**
 * A stand-in workspace container: `sleep` as PID 1 of new PID, mount and network namespaces with
 * private propagation, sharing the host's root folder. Returns the unshare process and the host
 * PID of the container's init.
 */
function startContainer() {
  return runContainer(['--mount-proc', 'sleep', '600'], () => true)
}

/**
 * Starts unshare with new PID, mount and network namespaces (private propagation) around its first
 * process, given by `args`, and waits until that process runs `sleep` and `ready(init)` holds.
 * Returns the unshare process and the host PID of the container's init.
 */
async function runContainer(args, ready) {
  const unshare = spawn('unshare', ['--fork', '--pid', '--mount', '--net', '--propagation', 'private', '--kill-child', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  unshare.stderr.on('data', (chunk) => { stderr += chunk })
  const children = `/proc/${unshare.pid}/task/${unshare.pid}/children`
  for (let i = 0; i < 1000; i++) {
    try {
      const found = readFileSync(children, 'utf8').trim().split(/\s+/)[0]
      // The child shows before it has entered its namespaces: wait until it runs `sleep`.
      if (found && readFileSync(`/proc/${found}/comm`, 'utf8').trim() === 'sleep' && ready(found)) return { unshare, init: Number(found) }
    } catch {}
    if (unshare.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 10))
  }
  await stopContainer({ unshare, init: 0 })
  throw new Error(`unshare started no container: ${stderr}`)
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

/**
 * A rooted container's first process (as core's `TestContainer::start_rooted`): a tmpfs root of
 * its own with `/usr` and `/etc` bound in, a `/dev` of its own with a few host devices bound in,
 * the folders given after the root bound in at their own paths (read-only unless they end in
 * `:rw`), its own proc, then `sleep` as init.
 */
const ROOTED_INIT = `
set -e
R=$1; shift
mount -t tmpfs -o size=16m,mode=755 ctrroot "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/sys" "$R/oldroot"
for l in bin sbin lib lib64; do if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi; done
mount --rbind /usr "$R/usr"; mount --rbind /etc "$R/etc"
mount -t tmpfs -o size=1m,mode=755 ctrdev "$R/dev"
for d in null zero full random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
for b in "$@"; do
  case "$b" in *:rw) b=\${b%:rw}; o=bind ;; *) o=bind,ro ;; esac
  mkdir -p "$R$b"; mount -o "$o" "$b" "$R$b"
done
cd "$R"
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
touch /.ready
exec sleep 600
`

/**
 * A stand-in workspace container with a root file system and a /dev of its own (what
 * PrepareForUserNS changes), `binds` visible inside at the same paths. As startContainer, plus
 * the folder its root was mounted on (empty on the host, removed by stopRootedContainer).
 */
async function startRootedContainer(binds) {
  const rootDir = mkdtempSync(join(tmpdir(), 'wsd-node-root-'))
  try {
    const container = await runContainer(['sh', '-c', ROOTED_INIT, 'sh', rootDir, ...binds], (init) => existsSync(`/proc/${init}/root/.ready`))
    return { ...container, rootDir }
  } catch (e) {
    try { rmdirSync(rootDir) } catch {}
    throw e
  }
}

async function stopRootedContainer(container) {
  await stopContainer(container)
  // The tmpfs root lived in the container's mount namespace only: the folder is empty.
  try { rmdirSync(container.rootDir) } catch {}
}

/** A cgroup of its own on the v2 hierarchy (the first cgroup2 mount in this process's mountinfo). */
function createV2Cgroup(name) {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '))
  if (!line) throw new Error('no cgroup v2 hierarchy on this node')
  const mount = line.split(' ')[4]
  const dir = join(mount, name)
  mkdirSync(dir)
  return { mount, dir }
}

/** Removes `dir` and the cgroups below it, children first; their processes go to the root cgroup. */
async function removeV2Cgroup({ mount, dir }) {
  const order = []
  const walk = (d) => {
    let entries = []
    try { entries = readdirSync(d, { withFileTypes: true }) } catch { return }
    for (const e of entries) if (e.isDirectory()) walk(join(d, e.name))
    order.push(d)
  }
  walk(dir)
  for (const d of order) {
    for (let i = 0; i < 100; i++) {
      try {
        for (const pid of readFileSync(join(d, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean)) {
          try { writeFileSync(join(mount, 'cgroup.procs'), pid) } catch {}
        }
      } catch {}
      try { rmdirSync(d); break } catch (e) { if (e.code === 'ENOENT') break }
      // A process that ended is released a little later.
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

/** The PIDs in `cgroup.procs` of `dir`, sorted. */
function cgroupProcs(dir) {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b)
  } catch {
    return []
  }
}

/** The host PID of the process the container (whose init is `init`) knows as `inner`. */
function hostPid(init, inner) {
  const ns = readlinkSync(`/proc/${init}/ns/pid`)
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const nspid = readFileSync(`/proc/${name}/status`, 'utf8').match(/^NSpid:\s+(.*)$/m)?.[1].split(/\s+/)
      if (nspid?.length === 2 && Number(nspid[1]) === inner && readlinkSync(`/proc/${name}/ns/pid`) === ns) return Number(name)
    } catch {}
  }
  throw new Error(`no process ${inner} in the container`)
}

/** Whether `path` is a mount point in the mount namespace of `pid`. */
function isMountOf(pid, path) {
  try {
    return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').some((l) => l.split(' ')[4] === path)
  } catch {
    return false
  }
}

/** Runs a command; its output. */
function run(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] })
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
  assert.deepEqual(mounted, { code: 'OK', reason: '', message: '', response: {} })
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
  assert.deepEqual(unmounted, { code: 'OK', reason: '', message: '', response: {} })
  assert.deepEqual(listing(container.init, target), [], 'unmounted')
  clearInterval(timer)

  // The calls from inside take a Node start-up each (100 ms or more): a blocked event loop would
  // fire no timer during them.
  assert.ok(ticksDuringMount >= 1, `timers fired ${ticksDuringMount} times during a ${mountMs} ms MountProc`)
  assert.ok(ticks > ticksDuringMount, `timers fired ${ticks - ticksDuringMount} times after the mount (UmountProc took ${umountMs} ms)`)
  t.diagnostic(`MountProc from inside ${mountMs} ms, UmountProc ${umountMs} ms, ${ticks} timer ticks`)
})

test('the in-workspace sequence of a workspace runtime, from inside a rooted container', { skip: needsRoot }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsd-node-seq-'))
  let d, container, cgroup
  t.after(async () => {
    // The container's namespaces take its mounts, veths and NAT table with them, its tmpfs root
    // the files PrepareForUserNS made; the cgroups are removed here.
    if (container) await stopRootedContainer(container)
    if (cgroup) await removeV2Cgroup(cgroup)
    if (d) await d.close()
    rmSync(dir, { recursive: true, force: true })
  })
  d = new Daemon(options(dir))
  await d.initWorkspace({ id: 'ws-seq', metadata: { owner: 'o', metaId: 'm-seq' }, initializer: { empty: {} } })
  const socket = join(dir, 'area/ws-seq-daemon/daemon.sock')
  // The socket's folder and the client (with its modules and protos) are seen inside.
  container = await startRootedContainer([dirname(socket) + ':rw', repository])
  const { init } = container
  cgroup = createV2Cgroup(`wsd-node-${process.pid}`)
  writeFileSync(join(cgroup.dir, 'cgroup.procs'), String(init))
  await d.attachContainer({ id: 'ws-seq', pid: String(init), cgroupPath: '' })
  const call = (method, request = {}) => callFromInside(init, socket, method, request)
  const ok = (answer, what) => {
    assert.equal(answer.code, 'OK', `${what}: ${answer.code} ${answer.reason} ${answer.message}`)
    return answer.response
  }
  const exhausted = (answer, what) => assert.equal(answer.code, 'RESOURCE_EXHAUSTED', `${what} a second time: ${JSON.stringify(answer)}`)

  const prepared = ok(await call('PrepareForUserNS'), 'PrepareForUserNS')
  assert.equal(prepared.fsShift, 'IDMAPPED')
  assert.ok(existsSync(`/proc/${init}/root/dev/net/tun`), 'PrepareForUserNS made /dev/net/tun')
  assert.deepEqual(cgroupProcs(join(cgroup.dir, 'workspace')), [init], 'the container moved into the workspace cgroup')

  // A child in user, mount and network namespaces of its own, started below the container's
  // init as a workspace runtime starts one.
  mkdirSync(`/proc/${init}/root/tmp/p`)
  const inner = Number(run('nsenter', ['-t', String(init), '-a', 'sh', '-c', 'unshare --user --mount --net sleep 600 >/dev/null 2>&1 </dev/null & echo $!']).trim())
  const child = hostPid(init, inner)
  for (let i = 0; readlinkSync(`/proc/${child}/ns/user`) === readlinkSync('/proc/self/ns/user'); i++) {
    assert.ok(i < 1000, 'the child made no user namespace')
    await new Promise((r) => setTimeout(r, 10))
  }
  // Started by nsenter, it is in this process's cgroup; forked by the init it would be in the
  // init's (the workspace cgroup since PrepareForUserNS).
  writeFileSync(join(cgroup.dir, 'workspace', 'cgroup.procs'), String(child))

  const mapping = [{ containerId: 0, hostId: 33333, size: 1 }, { containerId: 1, hostId: 100000, size: 65534 }]
  ok(await call('WriteIDMapping', { pid: inner, gid: false, mapping }), 'WriteIDMapping uid')
  ok(await call('WriteIDMapping', { pid: inner, gid: true, mapping }), 'WriteIDMapping gid')
  ok(await call('MountProc', { target: '/tmp/p', pid: inner }), 'MountProc')
  ok(await call('EvacuateCGroup'), 'EvacuateCGroup')
  ok(await call('SetupPairVeths', { pid: inner }), 'SetupPairVeths')

  // The shifted root: in the child's mount namespace only; root of the child's user namespace
  // makes a file through it that is root's on the container root and 33333's seen through it.
  assert.ok(isMountOf(child, '/.workspace/mark'), 'the idmapped root in the child')
  assert.ok(!isMountOf(init, '/.workspace/mark'), 'not in the container')
  assert.ok(isMountOf(child, '/tmp/p'), 'the proc in the child')
  run('nsenter', ['-t', String(child), '-U', '-m', 'touch', '/.workspace/mark/f'])
  assert.equal(statSync(`/proc/${init}/root/f`).uid, 0, 'on the container root')
  const shifted = statSync(`/proc/${child}/root/.workspace/mark/f`)
  assert.deepEqual([shifted.uid, shifted.gid], [33333, 33333], 'through the idmapped root')

  assert.deepEqual(cgroupProcs(join(cgroup.dir, 'workspace/user')), [init, child].sort((a, b) => a - b), 'evacuated to workspace/user')
  assert.deepEqual(cgroupProcs(join(cgroup.dir, 'workspace')), [])
  assert.equal(statSync(join(cgroup.dir, 'workspace/user')).uid, 33333, 'delegated')

  assert.match(run('nsenter', ['-t', String(init), '-n', 'ip', '-o', 'link']), /\bveth0[@:]/)
  assert.match(run('nsenter', ['-t', String(child), '-n', 'ip', '-o', 'addr']), /ceth0\s+inet 10\.0\.5\.2\/30/)
  assert.match(run('nsenter', ['-t', String(init), '-n', 'nft', 'list', 'tables']), /^table ip wsd$/m)

  const info = ok(await call('WorkspaceInfo'), 'WorkspaceInfo')
  assert.ok(Number(info.resources?.cpu?.limit) > 0, `a CPU limit: ${JSON.stringify(info)}`)
  assert.ok(Number(info.resources?.memory?.limit) > 0, `a memory limit: ${JSON.stringify(info)}`)

  exhausted(await call('PrepareForUserNS'), 'PrepareForUserNS')
  exhausted(await call('EvacuateCGroup'), 'EvacuateCGroup')

  const down = ok(await call('Teardown'), 'Teardown')
  assert.equal(down.success, true)
  exhausted(await call('Teardown'), 'Teardown')
  const wiped = ok(await call('WipingTeardown', { doWipe: true }), 'WipingTeardown')
  assert.equal(wiped.success, true)

  // Nothing left of the sequence; the child still runs.
  assert.ok(existsSync(`/proc/${child}`), 'the child still runs')
  assert.ok(!isMountOf(child, '/.workspace/mark'), 'the idmapped root unmounted')
  assert.ok(!isMountOf(child, '/tmp/p'), 'the proc unmounted')
  assert.doesNotMatch(run('nsenter', ['-t', String(init), '-n', 'ip', '-o', 'link']), /\bveth0[@:]/)
  assert.doesNotMatch(run('nsenter', ['-t', String(init), '-n', 'nft', 'list', 'tables']), /\bwsd\b/)
  assert.ok(!existsSync(join(cgroup.dir, 'workspace')), 'the workspace cgroup removed')
  assert.ok(!existsSync(`/proc/${init}/root/dev/net/tun`), '/dev/net/tun removed')
  assert.ok(!existsSync(`/proc/${init}/root/.workspace/mark`), 'the mark folder removed')
  assert.ok(existsSync(`/proc/${init}/root/dev/null`), "the container's own /dev kept")
})
