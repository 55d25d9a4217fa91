// The bytes of a small WebAssembly module with SIMD (f32x4) linear kernels for the CPU backend,
// written out by hand here so that no toolchain is needed. Each kernel computes a block of MB rows
// of x against NB weight rows at a time, with MB x NB f32x4 accumulators held in registers, so
// every weight vector loaded serves MB rows and every x vector NB weight rows.
//
// Both operands are interleaved by groups of four values, so that each kernel reads one sequential
// stream of each: x as [x0[0..4], x1[0..4], .., x{MB-1}[0..4], x0[4..8], ..] (interleaveRows) and
// each block of NB weight rows the same way (cpu-linear.ts places weights in pairs so). Reading two
// row-major weight rows side by side instead was 2.5x slower than one from memory (measured on an
// AMD EPYC under KVM), while from one stream two rows at a time run faster than one: [61440, 576]
// f32, in cache, 1 x 1 6.3 ms, 1 x 2 3.7 ms, 4 x 1 9.2 ms, 4 x 2 6.7 ms.
//
// Kernel `k{MB}x{NB}(x, w, out, N, K, blocks)`, all byte addresses in the imported memory, K a
// multiple of 4 (at least 4):
//   for b in [0, blocks), i in [0, MB), j in [0, NB):
//     out[i * N + b * NB + j] = sum over k in [0, K) of x_i[k] * w_{b * NB + j}[k]
// Each sum is four f32 lanes (lane l adds the products of k = l, l + 4, .. in order), then
// (lane 0 + lane 1) + (lane 2 + lane 3): the same for a row alone or in a batch, whatever MB and NB.

/** The kernel shapes the module exports, as [MB, NB]. */
export const KERNELS: readonly (readonly [number, number])[] = [1, 2, 3, 4].flatMap((mb) => [[mb, 1], [mb, 2]] as const);

export const kernelName = (mb: number, nb: number) => `k${mb}x${nb}`;

import { name, section, sleb, uleb, vector } from './wasm-bytes.ts';

// Opcodes used below.
const I32 = 0x7f, V128 = 0x7b;
const BLOCK = 0x02, LOOP = 0x03, VOID = 0x40, END = 0x0b, BR = 0x0c, BR_IF = 0x0d;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22, I32_CONST = 0x41;
const I32_NE = 0x47, I32_GE_S = 0x4e, I32_ADD = 0x6a, I32_MUL = 0x6c;
const F32_STORE = 0x38, F32_ADD = 0x92;
const SIMD = 0xfd, V128_LOAD = 0, V128_CONST = 12, F32X4_EXTRACT_LANE = 31, F32X4_ADD = 228, F32X4_MUL = 230;

function kernelBody(MB: number, NB: number): number[] {
  // Parameters: 0 x, 1 w, 2 out, 3 N, 4 K, 5 blocks. i32 locals follow, then v128 locals.
  const X = 0, W = 1, OUT = 2, N = 3, K = 4, BLOCKS = 5;
  let next = 6;
  const i32 = () => next++;
  const xk = i32(), wk = i32(), xEnd = i32(), b = i32(), outP = i32(), rowOut = i32();
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
  /** v128.load at local + offset (align 2^4). */
  const load = (local: number, offset: number) => {
    get(local);
    simd(V128_LOAD);
    c.push(4, ...uleb(offset));
  };
  const add = (local: number, v: number) => {
    get(local);
    constant(v);
    c.push(I32_ADD);
  };

  get(N); constant(4); c.push(I32_MUL); set(rowOut);
  get(K); constant(4 * MB); c.push(I32_MUL); get(X); c.push(I32_ADD); set(xEnd);
  get(OUT); set(outP);
  get(W); set(wk); // blocks are contiguous: each block's loop leaves wk at the next one
  constant(0); set(b);
  c.push(BLOCK, VOID, LOOP, VOID);
  {
    get(b); get(BLOCKS); c.push(I32_GE_S, BR_IF, 1);
    for (const a of acc) {
      simd(V128_CONST);
      c.push(...new Array<number>(16).fill(0));
      set(a);
    }
    get(X); set(xk);
    c.push(LOOP, VOID);
    {
      wv.forEach((v, j) => {
        load(wk, 16 * j);
        set(v);
      });
      for (let i = 0; i < MB; i++) {
        load(xk, 16 * i);
        set(xv);
        for (let j = 0; j < NB; j++) {
          const a = acc[i * NB + j]!;
          get(a); get(xv); get(wv[j]!); simd(F32X4_MUL); simd(F32X4_ADD); set(a);
        }
      }
      add(wk, 16 * NB); set(wk);
      add(xk, 16 * MB); c.push(LOCAL_TEE, ...uleb(xk)); get(xEnd); c.push(I32_NE, BR_IF, 0);
    }
    c.push(END);
    for (let i = 0; i < MB; i++) {
      for (let j = 0; j < NB; j++) {
        const a = acc[i * NB + j]!;
        get(outP);
        if (i > 0) {
          get(rowOut); constant(i); c.push(I32_MUL, I32_ADD);
        }
        get(a); simd(F32X4_EXTRACT_LANE); c.push(0);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(1, F32_ADD);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(2);
        get(a); simd(F32X4_EXTRACT_LANE); c.push(3, F32_ADD, F32_ADD);
        c.push(F32_STORE, 2, ...uleb(4 * j));
      }
    }
    add(outP, 4 * NB); set(outP);
    add(b, 1); set(b);
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
