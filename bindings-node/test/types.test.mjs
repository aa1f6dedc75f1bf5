// The TypeScript types are usable: tsc type-checks a file that uses the API.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import test from 'node:test'

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..')

test('tsc --noEmit accepts the example and refuses misuse', () => {
  const tsc = join(pkg, 'node_modules/typescript/bin/tsc')
  const out = execFileSync(process.execPath, [tsc, '--noEmit', '-p', 'test'], { cwd: pkg, encoding: 'utf8' })
  assert.equal(out.trim(), '')
})
