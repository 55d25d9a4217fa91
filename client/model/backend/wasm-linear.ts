// The bytes of a small WebAssembly module with SIMD (f32x4) linear kernels for the CPU backend,
// written out by hand here so that no toolchain is needed. Each kernel computes a block of MB rows
// of x against NB weight rows at a time, so every weight vector loaded serves MB rows and every x
// vector NB weight rows, with MB x NB f32x4 accumulators held in registers. The CPU backend uses
// NB = 1: weights far larger than the caches stream fastest as one sequential read (measured on
// an AMD EPYC under KVM: [61440, 576] f32, one row: 1 x 1 in 7 ms, 1 x 4 in 15 ms, 1 x 8 in 13 ms;
// eight rows: 4 x 1 in 22-26 ms, 4 x 2 in 31 ms), although 4 x 2 is faster on weights in cache.
//
// Kernel `k{MB}x{NB}(x, K, w, N, out, blocks)`, all byte addresses in the imported memory:
//   for b in [0, blocks), i in [0, MB), j in [0, NB):
//     out[i * N + b * NB + j] = sum over k in [0, K & ~3) of x[i * K + k] * w[(b * NB + j) * K + k]
// Sums are f32, four lanes each, added across lanes at the end. Callers pass K a multiple of 4
// (columns from K & ~3 on are not read).

/** The kernel shapes the module exports, as [MB, NB]. */
export const KERNELS: readonly (readonly [number, number])[] = [[4, 1], [3, 1], [2, 1], [1, 1]];

export const kernelName = (mb: number, nb: number) => `k${mb}x${nb}`;

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
};

const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) return [...out, byte];
    out.push(byte | 0x80);
  }
};

const name = (s: string) => [...uleb(s.length), ...new TextEncoder().encode(s)];
const vector = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

// Opcodes used below.
const I32 = 0x7f, V128 = 0x7b;
const BLOCK = 0x02, LOOP = 0x03, VOID = 0x40, END = 0x0b, BR = 0x0c, BR_IF = 0x0d;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, I32_CONST = 0x41;
const I32_GE_S = 0x4e, I32_ADD = 0x6a, I32_MUL = 0x6c, I32_AND = 0x71;
const F32_STORE = 0x38, F32_ADD = 0x92;
const SIMD = 0xfd, V128_LOAD = 0, V128_CONST = 12, F32X4_EXTRACT_LANE = 31, F32X4_ADD = 228, F32X4_MUL = 230;

function kernelBody(MB: number, NB: number): number[] {
  // Parameters: 0 x, 1 K, 2 w, 3 N, 4 out, 5 blocks. i32 locals follow, then v128 locals.
  const X = 0, K = 1, W = 2, N = 3, OUT = 4, BLOCKS = 5;
  let next = 6;
  const i32 = () => next++;
  const rowBytes = i32(), vecBytes = i32(), k = i32(), b = i32();
  const xRow = Array.from({ length: MB }, i32);
  const outRow = Array.from({ length: MB }, i32);
  const wRow = Array.from({ length: NB }, i32);
  const i32Count = next - 6;
  const v128 = () => next++;
  const acc = Array.from({ length: MB * NB }, v128);
  const wv = Array.from({ length: NB }, v128);
  const xv = v128();
  const v128Count = next - 6 - i32Count;

  const c: number[] = [];
  const get = (i: number) => c.push(LOCAL_GET, ...uleb(i));
  const set = (i: number) => c.push(LOCAL_SET, ...uleb(i));
  const constant = (v: number) => c.push(I32_CONST, ...sleb(v));
  const simd = (op: number) => c.push(SIMD, ...uleb(op));
  /** local = base + step * i */
  const offset = (local: number, base: number, step: number, i: number) => {
    get(base);
    get(step);
    constant(i);
    c.push(I32_MUL, I32_ADD);
    set(local);
  };

  get(K); constant(4); c.push(I32_MUL); set(rowBytes);
  get(K); constant(-4); c.push(I32_AND); constant(4); c.push(I32_MUL); set(vecBytes);
  xRow.forEach((local, i) => offset(local, X, rowBytes, i));
  outRow.forEach((local, i) => offset(local, OUT, N, 4 * i));
  wRow.forEach((local, j) => offset(local, W, rowBytes, j));
  constant(0); set(b);
  c.push(BLOCK, VOID, LOOP, VOID);
  {
    get(b); get(BLOCKS); c.push(I32_GE_S, BR_IF, 1);
    for (const a of acc) {
      simd(V128_CONST);
      c.push(...new Array<number>(16).fill(0));
      set(a);
    }
    constant(0); set(k);
    c.push(BLOCK, VOID, LOOP, VOID);
    {
      get(k); get(vecBytes); c.push(I32_GE_S, BR_IF, 1);
      wRow.forEach((local, j) => {
        get(local); get(k); c.push(I32_ADD); simd(V128_LOAD); c.push(0, 0); set(wv[j]!);
      });
      xRow.forEach((local, i) => {
        get(local); get(k); c.push(I32_ADD); simd(V128_LOAD); c.push(0, 0); set(xv);
        for (let j = 0; j < NB; j++) {
          const a = acc[i * NB + j]!;
          get(a); get(xv); get(wv[j]!); simd(F32X4_MUL); simd(F32X4_ADD); set(a);
        }
      });
      get(k); constant(16); c.push(I32_ADD); set(k);
      c.push(BR, 0);
    }
    c.push(END, END);
    for (let i = 0; i < MB; i++) {
      for (let j = 0; j < NB; j++) {
        const a = acc[i * NB + j]!;
        get(outRow[i]!);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(0);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(1, F32_ADD);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(2);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(3, F32_ADD, F32_ADD);
        c.push(F32_STORE, 2, ...uleb(4 * j));
      }
    }
    for (const local of outRow) {
      get(local); constant(4 * NB); c.push(I32_ADD); set(local);
    }
    for (const local of wRow) {
      get(local); get(rowBytes); constant(NB); c.push(I32_MUL, I32_ADD); set(local);
    }
    get(b); constant(1); c.push(I32_ADD); set(b);
    c.push(BR, 0);
  }
  c.push(END, END, END);
  const body = [...vector([[...uleb(i32Count), I32], [...uleb(v128Count), V128]]), ...c];
  return [...uleb(body.length), ...body];
}

/**
 * The module: imports `env.memory` (shared, 1 page at least, at most `maxPages`) and exports one
 * function per entry of KERNELS.
 */
export function linearModuleBytes(maxPages: number): Uint8Array<ArrayBuffer> {
  const params = vector(Array.from({ length: 6 }, () => [I32]));
  const types = section(1, vector([[0x60, ...params, 0]]));
  const imports = section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(1), ...uleb(maxPages)]]));
  const functions = section(3, vector(KERNELS.map(() => [0])));
  const exports = section(7, vector(KERNELS.map(([mb, nb], i) => [...name(kernelName(mb, nb)), 0x00, ...uleb(i)])));
  const code = section(10, vector(KERNELS.map(([mb, nb]) => kernelBody(mb, nb))));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...functions, ...exports, ...code]);
}
