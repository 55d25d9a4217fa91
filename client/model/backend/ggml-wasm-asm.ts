// A small WebAssembly assembler for the GGML kernels (ggml-wasm.ts): function bodies written op by
// op into bytes, locals allocated as they are needed, and the module around them. No toolchain.

import { name, section, sleb, uleb, vector } from './wasm-bytes.ts';

export const I32 = 0x7f, V128 = 0x7b;

/** Plain opcodes. */
export const OP = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d, call: 0x10,
  f32Store: 0x38,
  i32Eq: 0x46, i32Ne: 0x47, i32LtU: 0x49, i32GtU: 0x4b, i32GeU: 0x4f,
  i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c,
  f32Add: 0x92, i32Select: 0x1b,
} as const;

/** SIMD opcodes (after the 0xfd prefix). Each extend_high follows its extend_low: kernels add 1 to pick. */
export const SIMD = {
  load: 0, load32Splat: 9, const: 12, shuffle: 13, swizzle: 14,
  f32x4ExtractLane: 31,
  and: 78, or: 80, xor: 81,
  i8x16Sub: 113,
  i16x8ExtendLowI8x16S: 135, i16x8ExtendHighI8x16S: 136, i16x8ExtendLowI8x16U: 137, i16x8ExtendHighI8x16U: 138,
  i16x8Shl: 139, i16x8ShrU: 141,
  i32x4ExtendLowI16x8S: 167, i32x4ExtendHighI16x8S: 168, i32x4ExtendLowI16x8U: 169, i32x4ExtendHighI16x8U: 170,
  f32x4Add: 228, f32x4Sub: 229, f32x4Mul: 230,
  f32x4ConvertI32x4S: 250,
} as const;

/** One function's body: ops appended in order, locals numbered after the parameters. */
export class FunctionBody {
  readonly code: number[] = [];
  private readonly localTypes: number[] = [];

  constructor(readonly params: number) {}

  private local(type: number): number {
    this.localTypes.push(type);
    return this.params + this.localTypes.length - 1;
  }

  i32(): number {
    return this.local(I32);
  }

  v128(): number {
    return this.local(V128);
  }

  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  get(local: number): this {
    return this.op(0x20, ...uleb(local));
  }

  set(local: number): this {
    return this.op(0x21, ...uleb(local));
  }

  tee(local: number): this {
    return this.op(0x22, ...uleb(local));
  }

  call(functionIndex: number): this {
    return this.op(OP.call, ...uleb(functionIndex));
  }

  i32Const(value: number): this {
    return this.op(0x41, ...sleb(value | 0));
  }

  simd(op: number, ...immediates: number[]): this {
    return this.op(0xfd, ...uleb(op), ...immediates);
  }

  /** v128.load from the address on the stack plus `offset`. */
  load(offset: number): this {
    return this.simd(SIMD.load, 0, ...uleb(offset)); // alignment hint 1: blocks are not 16-byte aligned
  }

  /** Four copies of the f32 at the address on the stack plus `offset`. */
  loadSplatF32(offset: number): this {
    return this.simd(SIMD.load32Splat, 0, ...uleb(offset));
  }

  v128Const(bytes: readonly number[]): this {
    return this.simd(SIMD.const, ...bytes);
  }

  /** A v128 constant of four equal f32 values. */
  f32x4Const(value: number): this {
    return this.v128Const([...new Uint8Array(new Float32Array([value, value, value, value]).buffer)]);
  }

  /** A v128 constant of sixteen equal bytes. */
  i8x16Const(value: number): this {
    return this.v128Const(new Array<number>(16).fill(value & 0xff));
  }

  shuffle(lanes: readonly number[]): this {
    return this.simd(SIMD.shuffle, ...lanes);
  }

  /** `local += value` for an i32 local. */
  addTo(local: number, value: number): this {
    return this.get(local).i32Const(value).op(OP.i32Add).set(local);
  }

  /** The body as the code section encodes it: size, locals, code, end. */
  encode(): number[] {
    const groups: number[][] = [];
    for (let i = 0; i < this.localTypes.length; ) {
      let j = i;
      while (j < this.localTypes.length && this.localTypes[j] === this.localTypes[i]) j++;
      groups.push([...uleb(j - i), this.localTypes[i]!]);
      i = j;
    }
    const body = [...vector(groups), ...this.code, OP.end];
    return [...uleb(body.length), ...body];
  }
}

/** A function of the module: `params` i32 parameters, no result. */
export interface ModuleFunction {
  name: string;
  params: number;
  body: FunctionBody;
}

/**
 * A module that imports `env.memory` (shared, at most `maxPages`) and exports `functions` in order
 * (a function may call those before it by index).
 */
export function moduleBytes(functions: readonly ModuleFunction[], maxPages: number): Uint8Array<ArrayBuffer> {
  const arities = [...new Set(functions.map((f) => f.params))];
  const types = section(1, vector(arities.map((n) => [0x60, ...vector(Array.from({ length: n }, () => [I32])), 0])));
  const imports = section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(1), ...uleb(maxPages)]]));
  const declared = section(3, vector(functions.map((f) => uleb(arities.indexOf(f.params)))));
  const exports = section(7, vector(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)])));
  const code = section(10, vector(functions.map((f) => f.body.encode())));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...declared, ...exports, ...code]);
}

