import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyFailures, PolicySandbox, withFallback, type Policy } from '../policy/index.ts';
import { AigridError } from '../protocol/errors.ts';

/** The AigridError fn throws (failing the test when it returns or throws something else). */
function caught(fn: () => unknown): AigridError {
  let value: unknown;
  try {
    value = fn();
  } catch (err) {
    if (err instanceof AigridError) return err;
    throw err;
  }
  throw new Error(`expected an AigridError, got ${JSON.stringify(value)}`);
}

const timed = <T>(fn: () => T): [T, number] => {
  const start = performance.now();
  const value = fn();
  return [value, performance.now() - start];
};

let sandbox: PolicySandbox;
// Generous: the machine is shared, and a test of the time limit sets its own.
const RELAXED = { timeMs: 2_000 };
const compile = (source: string, name = 'test') => sandbox.compile(source, { name, limits: RELAXED });
const run = (source: string, parameters: unknown = null, input: unknown = null, context: unknown = null) => compile(source).run(parameters, input, context);

beforeAll(async () => {
  sandbox = await PolicySandbox.create();
});
afterAll(() => sandbox.destroy());

describe('policy contract', () => {
  it('passes parameters, input and context as JSON values and returns the JSON output', () => {
    const policy = compile(`
      const WEIGHT = 2; // top-level constants are seen by eval
      function eval(parameters, input, context) {
        const best = input.peers.slice().sort((a, b) => a.ms * WEIGHT + a.load - (b.ms * WEIGHT + b.load))[0];
        return { best: best.id, maxHops: parameters.maxHops, network: context.network, nothing: null, ok: true };
      }`);
    const input = { peers: [{ id: 'a', ms: 30, load: 1 }, { id: 'b', ms: 10, load: 2 }] };
    expect(policy.run({ maxHops: 3 }, input, { network: 'n1' })).toEqual({ best: 'b', maxHops: 3, network: 'n1', nothing: null, ok: true });
    // Strict code assigns eval instead of declaring it; undefined arguments arrive as null.
    expect(compile('"use strict"; globalThis.eval = (p, i, c) => [p, i, c];').run(undefined, 5, 'x')).toEqual([null, 5, 'x']);
  });

  it('refuses code that does not compile or defines no eval: ERR_POLICY_INVALID', () => {
    const syntax = caught(() => compile('function eval(p {\n  return 1\n}'));
    expect(syntax.code).toBe('ERR_POLICY_INVALID');
    expect(syntax.message).toMatch(/SyntaxError/);
    expect(caught(() => compile('function evaluate(p) { return p }')).message).toMatch(/defines no function eval/);
    expect(caught(() => compile('var eval = 42;')).code).toBe('ERR_POLICY_INVALID');
    expect(caught(() => compile('throw new Error("not ready")')).message).toMatch(/not ready/);
    expect(caught(() => compile('import fs from "node:fs"; function eval() {}')).code).toBe('ERR_POLICY_INVALID');
    expect(caught(() => sandbox.compile('for (;;) {}', { limits: { timeMs: 50 } })).message).toMatch(/time limit of 50 ms/); // a top level that never ends
    expect(caught(() => sandbox.compile(42 as unknown as string)).code).toBe('ERR_POLICY_INVALID');
    expect(caught(() => sandbox.compile(`function eval() {} //${'x'.repeat(70_000)}`)).message).toMatch(/more than the 65536 allowed/);
  });

  it('reports a throw as ERR_POLICY_FAILED with its message, on one line', () => {
    const err = caught(() => run('function eval() {\n  throw new TypeError("no route\\nfor you");\n}'));
    expect(err.code).toBe('ERR_POLICY_FAILED');
    expect(err.message).toContain('TypeError: no route\\u000afor you (line 2)');
    expect(err.message).not.toContain('\n');
    expect(caught(() => run('function eval() { throw "plain string" }')).message).toContain('threw "plain string"');
    expect(caught(() => run('function eval() { throw Object.create(null) }')).code).toBe('ERR_POLICY_FAILED');
  });

  it('checks its limits and arguments', () => {
    expect(caught(() => sandbox.compile('function eval() {}', { limits: { timeMs: 0 } })).code).toBe('ERR_INVALID_ARGUMENT');
    expect(caught(() => sandbox.compile('function eval() {}', { limits: { timeMs: 1.5 } })).code).toBe('ERR_INVALID_ARGUMENT');
    expect(caught(() => sandbox.compile('function eval() {}', { limits: { fuel: 1 } as never })).code).toBe('ERR_INVALID_ARGUMENT');
    expect(caught(() => sandbox.compile('function eval() {}', { limits: { memoryBytes: 1 << 20 } as never })).code).toBe('ERR_INVALID_ARGUMENT');
    expect(caught(() => sandbox.compile('function eval() {}', { name: '' })).code).toBe('ERR_INVALID_ARGUMENT');
    const echo = compile('function eval(p, i) { return i }');
    expect(caught(() => echo.run(null, { n: 1n }, null)).code).toBe('ERR_INVALID_ARGUMENT');
    expect(caught(() => echo.run(null, 'x'.repeat(300_000), null)).code).toBe('ERR_POLICY_LIMIT');
  });
});

describe('limits', () => {
  it('interrupts an endless loop soon after its time limit, even one inside try/finally', () => {
    const policy = sandbox.compile('function eval() { try { for (;;) {} } catch (e) { return "caught" } finally { return "finally" } }', { limits: { timeMs: 50 } });
    const [err, ms] = timed(() => caught(() => policy.run(null, null, null)));
    expect(err.code).toBe('ERR_POLICY_LIMIT');
    expect(err.message).toMatch(/time limit of 50 ms/);
    expect(ms).toBeGreaterThanOrEqual(45);
    expect(ms).toBeLessThan(2_000);
  });

  it('stops huge allocations at the memory limit and stays usable', () => {
    for (const body of [
      'return new Array(1e9).fill(0).length',
      'let s = "x"; for (;;) s = s + s',
      // Many mid-sized buffers: QuickJS's own limit counts allocations, the engine's memory cap stops them.
      'const keep = []; for (;;) keep.push(new Uint8Array(1e6))',
      'const keep = []; for (;;) keep.push("x".repeat(1e5) + keep.length)',
    ]) {
      const [err, ms] = timed(() => caught(() => run(`function eval() { ${body} }`)));
      expect(err.code, body).toBe('ERR_POLICY_LIMIT');
      expect(err.message, body).toMatch(/out of memory|string too long/);
      expect(ms, body).toBeLessThan(2_000);
      expect(run('function eval(p) { return p + 1 }', 41)).toBe(42);
    }
  });

  it('refuses one native scan over a huge sparse array instead of holding the thread', () => {
    const [err, ms] = timed(() => caught(() => run('function eval() { return new Array(1e9).indexOf(1) }')));
    expect(err.code).toBe('ERR_POLICY_LIMIT');
    expect(err.message).toMatch(/indexOf over 1000000000 elements/);
    expect(ms).toBeLessThan(1_000);
    expect(run('function eval() { return [3, 1, 2].sort().map((x) => x * 2).indexOf(4) }')).toBe(1);
  });

  it('turns runaway recursion into a stack limit', () => {
    const err = caught(() => run('function eval() { const f = (n) => f(n + 1) + 1; return f(0) }'));
    expect(err.code).toBe('ERR_POLICY_LIMIT');
    expect(err.message).toMatch(/stack overflow/);
  });

  it('refuses output that is not plain JSON, or too large', () => {
    const outputs: Record<string, string> = {
      function: 'return { f() {} }',
      undefined: 'return undefined',
      cycle: 'const a = {}; a.self = a; return a',
      bigint: 'return { n: 10n }',
      NaN: 'return [1, NaN]',
      'instance of a class': 'return new Map([[1, 2]])',
      Promise: 'return import("node:fs")',
      __proto__: 'return JSON.parse(\'{"__proto__": {"admin": true}}\')',
    };
    for (const [what, body] of Object.entries(outputs)) {
      const err = caught(() => run(`function eval() { ${body} }`));
      expect(err.code, what).toBe('ERR_POLICY_OUTPUT');
    }
    expect(caught(() => run('function eval() { return "x".repeat(300000) }')).code).toBe('ERR_POLICY_LIMIT');
    // Deep nesting ends at the stack or the time limit, never in the host's JSON.
    expect(['ERR_POLICY_LIMIT', 'ERR_POLICY_OUTPUT']).toContain(caught(() => run('function eval() { let a = []; for (let i = 0; i < 20000; i++) a = [a]; return a }')).code);
  });

  it('runs thousands of evaluations without leaking', () => {
    const policy = compile('function eval(p, i) { return i.items.map((x) => ({ x, y: x * p.k, r: Math.random() })).filter((o) => o.y % 3) }');
    const input = { items: Array.from({ length: 50 }, (_, i) => i) };
    for (let i = 0; i < 200; i++) policy.run({ k: i }, input, null);
    const before = process.memoryUsage().rss;
    const restarts = sandbox.stats().engineRestarts;
    for (let i = 0; i < 2_000; i++) policy.run({ k: i }, input, null);
    expect(sandbox.stats().engineRestarts).toBe(restarts); // a leaked handle would abort QuickJS and restart the engine
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('containment', () => {
  it('gives a policy nothing of the host', () => {
    const globals = Object.getOwnPropertyNames(globalThis).sort();
    const map = Array.prototype.map;
    const seen = run(`
    const probe = (f) => { try { return f() } catch (e) { return e.name } };
    const builtinEval = probe(() => eval('1 + 1')); // before the policy's own eval replaces it
    globalThis.eval = function () {
      return {
        types: [typeof process, typeof require, typeof fetch, typeof WebAssembly, typeof setTimeout, typeof Date, typeof performance, typeof console],
        sloppyThis: (function () { return Object.keys(this).length })(),
        Function: probe(() => Function('return this')()),
        constructor: probe(() => (() => 0).constructor('return process')()),
        generator: probe(() => Object.getPrototypeOf(function* () {}).constructor('yield 1')),
        eval: builtinEval,
        polluted: probe(() => { Object.prototype.polluted = 1; Array.prototype.map = () => 'evil'; return 'done' }),
      };
    };
    `);
    expect(seen).toEqual({
      types: Array(8).fill('undefined'),
      sloppyThis: 0, // the sandbox's own global, with nothing enumerable on it
      Function: 'EvalError',
      constructor: 'EvalError',
      generator: 'EvalError',
      eval: 'EvalError',
      polluted: 'done',
    });
    expect(Object.getOwnPropertyNames(globalThis).sort()).toEqual(globals);
    expect(Array.prototype.map).toBe(map);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps no state between evaluations, nor from one policy to another', () => {
    const polluter = compile('function eval() { Object.prototype.polluted = 1; Array.prototype.map = () => "evil"; globalThis.calls = (globalThis.calls || 0) + 1; return calls }');
    expect(polluter.run(null, null, null)).toBe(1);
    expect(polluter.run(null, null, null)).toBe(1);
    expect(run('function eval() { return [typeof ({}).polluted, [1, 2].map((x) => x * 2), typeof globalThis.calls] }')).toEqual(['undefined', [2, 4], 'undefined']);
  });

  it('is deterministic: no clock, and Math.random seeded from the call', async () => {
    const source = 'function eval(p) { return [Math.random(), Math.random(), typeof Date, typeof Date === "undefined" ? "no clock" : Date.now()] }';
    const first = run(source, { a: 1 }) as unknown[];
    expect(first[2]).toBe('undefined');
    expect(run(source, { a: 1 })).toEqual(first);
    const other = await PolicySandbox.create();
    try {
      expect(other.compile(source, { limits: RELAXED }).run({ a: 1 }, null, null)).toEqual(first);
    } finally {
      other.destroy();
    }
    // Another call draws other numbers, so ties are not always broken the same way.
    expect((run(source, { a: 2 }) as unknown[])[0]).not.toBe(first[0]);
  });

  it('survives a policy that overflows the host stack, disabling only that policy', async () => {
    const own = await PolicySandbox.create({ limits: { stackBytes: 256 * 1024 } });
    try {
      const good = own.compile('function eval(p) { return p * 2 }');
      // Parsing this in QuickJS recurses natively past the host's stack before QuickJS's own check.
      const deep = caught(() => own.compile(`function eval() { return ${'('.repeat(20_000)}1${')'.repeat(20_000)} }`));
      expect(deep.code).toBe('ERR_POLICY_INVALID');
      expect(own.stats().engineRestarts).toBe(1);
      expect(good.run(21, null, null)).toBe(42); // the spare engine took over at once
      // At run time: a stack limit this high lets JSON.parse's native recursion reach the host's stack.
      const bomb = own.compile('function eval() { return JSON.parse("[".repeat(100000) + "]".repeat(100000)) }');
      expect(caught(() => bomb.run(null, null, null)).message).toMatch(/broke the sandbox's engine/);
      expect(caught(() => bomb.run(null, null, null)).message).toMatch(/is disabled/);
      expect(own.stats().engineRestarts).toBe(2);
      // Both engines were lost before a new one loaded: calls fail fast, then work again.
      expect(caught(() => good.run(1, null, null)).message).toMatch(/loading a new engine/);
      for (let waited = 0; waited < 10_000 && !own.stats().engineReady; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(good.run(2, null, null)).toBe(4);
    } finally {
      own.destroy();
    }
    expect(caught(() => own.compile('function eval() {}')).code).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('withFallback', () => {
  const policies = () => ({
    ok: compile('function eval(p, i) { return i.length }', 'ok'),
    throws: compile('function eval() { throw new Error("bad\\nline") }', 'throws'),
    loops: sandbox.compile('function eval() { for (;;) {} }', { name: 'loops', limits: { timeMs: 20 } }),
  });

  it('uses the policy when it works, the default when it fails, and counts and logs each failure', () => {
    const { ok, throws, loops } = policies();
    const lines: string[] = [];
    let now = 0;
    const failures = new PolicyFailures((line) => lines.push(line), { logEveryMs: 10_000, now: () => now });
    const hook = (policy: Policy | undefined) => withFallback(policy, (p) => p.run(null, [1, 2, 3], null) as number, () => -1, failures.report);

    expect(hook(ok)).toBe(3);
    expect(hook(undefined)).toBe(-1);
    expect(hook(throws)).toBe(-1);
    expect(hook(loops)).toBe(-1);
    expect(hook(throws)).toBe(-1); // counted, not logged again within 10 s
    now = 20_000;
    expect(hook(throws)).toBe(-1);

    expect(failures.count('ok')).toBe(0);
    expect(failures.count('throws')).toBe(3);
    expect(failures.snapshot()).toEqual([
      { policy: 'throws', code: 'ERR_POLICY_FAILED', count: 3 },
      { policy: 'loops', code: 'ERR_POLICY_LIMIT', count: 1 },
    ]);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^policy "throws" failed, the default was used: ERR_POLICY_FAILED ".*bad/);
    expect(lines[2]).toMatch(/\(1 more since the last line\)$/);
    expect(lines.every((line) => !line.includes('\n'))).toBe(true);
    failures.forget('throws');
    expect(failures.count('throws')).toBe(0);
  });

  it('reports a validator that refuses the output as ERR_POLICY_OUTPUT, and keeps the default\'s own errors', () => {
    const { ok } = policies();
    const seen: AigridError[] = [];
    const invalid = withFallback(
      ok,
      (p) => {
        const out = p.run(null, [1], null);
        if (typeof out !== 'string') throw new TypeError('expected a peer id');
        return out;
      },
      () => 'default',
      (err) => seen.push(err),
    );
    expect(invalid).toBe('default');
    expect(seen.map((e) => e.code)).toEqual(['ERR_POLICY_OUTPUT']);
    // A report that throws does not become the hook's failure.
    expect(withFallback(ok, () => { throw new AigridError('ERR_POLICY_FAILED') }, () => 7, () => { throw new Error('log down') })).toBe(7);
    expect(() => withFallback(ok, () => { throw new Error('x') }, () => { throw new AigridError('ERR_NO_ROUTE') }, () => {})).toThrow(/No chain/);
  });
});
