// A seeded mutator for fuzz tests: takes a valid input (JSON value or bytes) and breaks it the
// ways hostile or buggy peers do: bit flips, truncation, fields deleted, duplicated or of the wrong
// type, huge numbers, deep nesting, odd unicode, oversize values. Each case draws from its own
// generator (caseRandom(seed, index)), so one failing case replays alone from its seed and index.
import { mulberry32 } from './random.ts';

/** The run's seed: FUZZ_SEED from the environment when set (to replay a failure), else `fallback`. */
export function fuzzSeed(fallback: number): number {
  const env = process.env.FUZZ_SEED;
  return env === undefined || env === '' ? fallback >>> 0 : Number(env) >>> 0;
}

/** The generator of case `index` of a run: independent of every other case. */
export function caseRandom(seed: number, index: number): () => number {
  return mulberry32((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
}

export class Mutator {
  /** What was done, in order, for a failure message. */
  readonly steps: string[] = [];

  constructor(readonly rand: () => number) {}

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  chance(p: number): boolean {
    return this.rand() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  // ---- bytes ----

  /** 1-4 byte-level mutations of a copy of `input`. */
  bytes(input: Uint8Array, rounds = 1 + this.int(4)): Uint8Array {
    let out: Uint8Array = input.slice();
    for (let r = 0; r < rounds; r++) out = this.byteOnce(out);
    return out;
  }

  private byteOnce(b: Uint8Array): Uint8Array {
    const at = (n = b.length) => (n === 0 ? 0 : this.int(n));
    const kind = this.int(12);
    switch (kind) {
      case 0: {
        if (b.length === 0) return b;
        const i = at();
        const bit = this.int(8);
        this.steps.push(`flip bit ${bit} of byte ${i}`);
        b[i]! ^= 1 << bit;
        return b;
      }
      case 1: {
        if (b.length === 0) return b;
        const i = at();
        const v = this.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, this.int(256)]);
        this.steps.push(`byte ${i} = ${v}`);
        b[i] = v;
        return b;
      }
      case 2: {
        const n = at(b.length + 1);
        this.steps.push(`truncate to ${n}`);
        return b.slice(0, n);
      }
      case 3: {
        const i = at(b.length + 1);
        const extra = Uint8Array.from({ length: 1 + this.int(16) }, () => this.int(256));
        this.steps.push(`insert ${extra.length} random bytes at ${i}`);
        return concat(b.subarray(0, i), extra, b.subarray(i));
      }
      case 4: {
        if (b.length === 0) return b;
        const i = at();
        const n = 1 + this.int(Math.min(64, b.length - i));
        this.steps.push(`delete ${n} bytes at ${i}`);
        return concat(b.subarray(0, i), b.subarray(i + n));
      }
      case 5: {
        if (b.length === 0) return b;
        const i = at();
        const n = 1 + this.int(Math.min(256, b.length - i));
        const to = at(b.length + 1);
        this.steps.push(`duplicate ${n} bytes from ${i} at ${to}`);
        return concat(b.subarray(0, to), b.slice(i, i + n), b.subarray(to));
      }
      case 6:
      case 7: {
        // An "interesting" 16- or 32-bit value over a field (headers are little endian).
        if (b.length < 4) return b;
        const wide = kind === 7;
        const i = at(b.length - (wide ? 3 : 1));
        const v = this.pick(wide ? [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe, 0x10000, this.int(2 ** 32)] : [0, 1, 0x7fff, 0x8000, 0xffff, 0xfffe, 0x100, this.int(2 ** 16)]);
        this.steps.push(`u${wide ? 32 : 16} at ${i} = ${v}`);
        const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
        if (wide) view.setUint32(i, v >>> 0, true);
        else view.setUint16(i, v, true);
        return b;
      }
      case 8: {
        const n = this.pick([1, 2, 7, 64, 1000, 70_000]);
        this.steps.push(`append ${n} bytes`);
        return concat(b, this.noise(n));
      }
      case 9: {
        if (b.length === 0) return b;
        const i = at();
        const n = 1 + this.int(Math.min(32, b.length - i));
        this.steps.push(`randomize ${n} bytes at ${i}`);
        for (let k = 0; k < n; k++) b[i + k] = this.int(256);
        return b;
      }
      case 10: {
        this.steps.push('empty');
        return new Uint8Array(0);
      }
      default: {
        if (b.length < 2) return b;
        const i = at(b.length - 1);
        this.steps.push(`swap bytes ${i},${i + 1}`);
        [b[i], b[i + 1]] = [b[i + 1]!, b[i]!];
        return b;
      }
    }
  }

  /** n seeded random bytes, cheaply (one draw seeds an xorshift). */
  noise(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let x = (this.int(2 ** 32) | 1) >>> 0;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    }
    return out;
  }

  // ---- JSON ----

  /**
   * A mutated copy of a JSON value, then serialized (most of the time) and possibly broken as
   * text or bytes. Returns a string when the result is valid UTF-16 text meant as such, else bytes.
   */
  json(value: unknown): string | Uint8Array {
    let v = structuredClone(value);
    const rounds = 1 + this.int(3);
    for (let r = 0; r < rounds; r++) v = this.valueOnce(v);
    let text = this.serialize(v);
    if (text.length > 3 * 2 ** 20) {
      // Enough to pass any size limit; more only costs time.
      this.steps.push(`cut from ${text.length} to 3 MiB`);
      text = text.slice(0, 3 * 2 ** 20);
    }
    const tail = this.int(10);
    if (tail === 0) {
      const bytes = this.bytes(new TextEncoder().encode(text));
      return bytes;
    }
    if (tail === 1) {
      const n = this.int(text.length + 1);
      this.steps.push(`text truncated to ${n}`);
      text = text.slice(0, n);
    }
    return text;
  }

  /** JSON.stringify, sometimes with a key duplicated in the text (JSON.parse keeps the last). */
  private serialize(v: unknown): string {
    const text = (JSON.stringify(v) ?? 'null').replace(/"\\u0001nest(\d+)([[{])"/g, (_, depth: string, open: string) => {
      const n = Number(depth);
      return open === '[' ? `${'['.repeat(n)}1${']'.repeat(n)}` : `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    });
    if (!this.chance(0.15) || typeof v !== 'object' || v === null || Array.isArray(v)) return text;
    const keys = Object.keys(v);
    if (keys.length === 0) return text;
    const key = this.pick(keys);
    const dup = JSON.stringify(this.junkValue(0)) ?? 'null';
    this.steps.push(`duplicate key ${key} in text`);
    return this.chance(0.5) ? `{${JSON.stringify(key)}:${dup},${text.slice(1)}` : `${text.slice(0, -1)}${keys.length ? ',' : ''}${JSON.stringify(key)}:${dup}}`;
  }

  private valueOnce(root: unknown): unknown {
    const paths = allPaths(root);
    const path = this.pick(paths);
    const here = get(root, path);
    const where = path.join('.') || '(root)';
    const op = this.int(10);
    if (op === 0 && path.length > 0) {
      this.steps.push(`delete ${where}`);
      return remove(root, path);
    }
    if (op === 1 && typeof here === 'object' && here !== null) {
      const key = this.pick(['__proto__', 'constructor', 'prototype', 'type', 'toString', '', 'x'.repeat(300), '\u0000', 'hasOwnProperty']);
      this.steps.push(`add key ${JSON.stringify(key.slice(0, 20))} to ${where}`);
      const value = this.junkValue(0);
      if (Array.isArray(here)) here.push(value);
      else Object.defineProperty(here, key, { value, enumerable: true, writable: true, configurable: true });
      return root;
    }
    if (op === 2 && Array.isArray(here)) {
      const n = this.pick([0, 2, 100, 2000]);
      this.steps.push(`array ${where} resized to ${n}`);
      // Copies share their elements: later mutations of one show in all, which is fine here.
      const fill = here.length > 0 ? here : [this.junkValue(0)];
      const out = Array.from({ length: n }, (_, i) => fill[i % fill.length]);
      return set(root, path, out);
    }
    if (op === 3) {
      // Built as text when serialized (a deep value would overflow JSON.stringify's stack).
      const depth = this.pick([10, 100, 1000, 5000, 100_000]);
      this.steps.push(`nest ${where} ${depth} deep`);
      return set(root, path, `${NEST}${depth}${this.chance(0.5) ? '[' : '{'}`);
    }
    if (op === 4 && typeof here === 'string') {
      const s = this.stringMutation(here);
      this.steps.push(`string ${where} -> ${JSON.stringify(s.slice(0, 40))}${s.length > 40 ? `... (${s.length})` : ''}`);
      return set(root, path, s);
    }
    if (op === 5 && typeof here === 'number') {
      const n = this.pick([0, -1, -0, 0.5, 1e308, -1e308, 2 ** 53 + 1, 2 ** 32, 2 ** 31, 0xffffffff, 1e-320, Number.MAX_SAFE_INTEGER, here + 1, here - 1]);
      this.steps.push(`number ${where} -> ${n}`);
      return set(root, path, n);
    }
    // Type confusion: another kind of value in this place.
    const value = this.junkValue(0);
    this.steps.push(`${where} -> ${JSON.stringify(value)?.slice(0, 60)}`);
    return set(root, path, value);
  }

  private stringMutation(s: string): string {
    switch (this.int(8)) {
      case 0:
        return '';
      case 1:
        return s + 'x'.repeat(this.pick([1, 300, 3000, 70_000]));
      case 2:
        return s.slice(0, this.int(s.length + 1));
      case 3:
        return s + this.pick(['\ud800', '\udfff', '\u0000', '\u202e', '\ufeff', '\u200b', '😀', 'é', '\uffff', '\n\r\t"\\']);
      case 4:
        return this.pick(['\ud800', '😀'.repeat(100), '\u0000'.repeat(10), 'ａｂｃ', '../../etc/passwd', 'http://127.0.0.1:1/x', 'file:///etc/passwd', '%00', '${x}', '<script>']);
      case 5: {
        const chars = [...s];
        if (chars.length > 0) chars[this.int(chars.length)] = String.fromCharCode(this.int(0x10000));
        return chars.join('');
      }
      case 6:
        return s.toUpperCase();
      default:
        return s + s;
    }
  }

  /** A JSON value of a random kind (strings, numbers, booleans, null, arrays, objects). */
  junkValue(depth: number): unknown {
    const k = this.int(depth > 2 ? 7 : 9);
    switch (k) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 0xffffffff, 65536, 255, 256]);
      case 3:
        return this.pick(['', 'x', 'ping', 'hello', '\ud800', '😀', '-1', '0', 'true', 'null', 'ERR_NOT_A_CODE']);
      case 4:
        return 'y'.repeat(this.pick([100, 1000, 10_000]));
      case 5:
        return this.int(1000);
      case 6:
        return '0123456789abcdef';
      case 7:
        return Array.from({ length: this.int(4) }, () => this.junkValue(depth + 1));
      default:
        return Object.fromEntries(Array.from({ length: this.int(4) }, (_, i) => [`k${i}`, this.junkValue(depth + 1)]));
    }
  }
}

const NEST = '\u0001nest';

type Path = (string | number)[];

function allPaths(root: unknown, limit = 400): Path[] {
  const out: Path[] = [[]];
  const walk = (v: unknown, path: Path) => {
    if (out.length >= limit || typeof v !== 'object' || v === null) return;
    for (const [k, child] of Object.entries(v)) {
      const p = [...path, Array.isArray(v) ? Number(k) : k];
      out.push(p);
      walk(child, p);
    }
  };
  walk(root, []);
  return out;
}

function get(root: unknown, path: Path): unknown {
  let v = root;
  for (const k of path) v = (v as Record<string | number, unknown>)[k];
  return v;
}

function set(root: unknown, path: Path, value: unknown): unknown {
  if (path.length === 0) return value;
  const parent = get(root, path.slice(0, -1)) as Record<string | number, unknown>;
  parent[path.at(-1)!] = value;
  return root;
}

function remove(root: unknown, path: Path): unknown {
  const parent = get(root, path.slice(0, -1));
  const key = path.at(-1)!;
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else delete (parent as Record<string, unknown>)[key];
  return root;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** An input as a failure message shows it: text cut to `max` characters, bytes as hex. */
export function show(input: string | Uint8Array, max = 600): string {
  if (typeof input === 'string') return `${JSON.stringify(input.slice(0, max))}${input.length > max ? ` ... (${input.length} chars)` : ''}`;
  const hex = Buffer.from(input.subarray(0, max / 2)).toString('hex');
  return `hex ${hex}${input.byteLength > max / 2 ? ` ... (${input.byteLength} bytes)` : ''}`;
}

/** Heap in use after a full collection (gc exposed at run time; V8 allows it). */
export async function settledHeap(): Promise<number> {
  const gc = await exposedGc();
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  return process.memoryUsage().heapUsed;
}

let gcFn: (() => void) | undefined;
async function exposedGc(): Promise<() => void> {
  if (gcFn) return gcFn;
  if (typeof globalThis.gc === 'function') return (gcFn = globalThis.gc as () => void);
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  gcFn = vm.runInNewContext('gc') as () => void;
  return gcFn;
}
