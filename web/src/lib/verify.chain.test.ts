// The TypeScript verifier against a real chain: tests/test_web.py anchors batches on Anvil (good orders,
// an unregistered station, another district's station, a revoked order, tampered copies), asks
// `timebank-verify` (scripts/verify_proof.py) for each case's outcome, and runs this file with the cases in
// TIMEBANK_VERIFY_CASES. Each case must end at the same step here as there.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { verifyBundle } from './verify'

const file = process.env.TIMEBANK_VERIFY_CASES
const cases: { rpcUrl: string; contract: string; cases: { name: string; bundle: unknown; contract?: string; failedStep: number | null; failedChecks: number }[] } | null = file
  ? JSON.parse(readFileSync(file, 'utf8'))
  : null

describe.skipIf(!cases)('five-step verifier on a real chain, as timebank-verify', () => {
  for (const c of cases?.cases ?? []) {
    it(`${c.name}: ${c.failedStep === null ? 'verified' : `fails at step ${c.failedStep}`}`, async () => {
      const result = await verifyBundle(c.bundle, cases!.rpcUrl, { contract: c.contract ?? cases!.contract })
      expect(result.failedStep, JSON.stringify(result.checks.filter((x) => !x.ok))).toBe(c.failedStep)
      expect(result.ok).toBe(c.failedStep === null)
      expect(new Set(result.checks.map((x) => x.step)).size).toBe(c.failedStep === 0 ? new Set(result.checks.map((x) => x.step)).size : 6)
      for (const check of result.checks) if (!check.ok && !check.message) expect(check.got).not.toBe(check.want)
    })
  }
})
