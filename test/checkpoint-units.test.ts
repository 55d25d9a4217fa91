// The loader's pure parts: float conversions (exact for every input, checked against references
// written differently), read planning, layer names, and the browser entry's import graph.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bf16BitsToFloat32, f16BitsToFloat32, f16ToNumber, planReads, toFloat32, layerOf, tensorsOfLayers, type TensorEntry,
} from '../client/model/checkpoint/index.ts';
import { AigridError } from '../protocol/index.ts';

/** f16 bits -> f32 bits, by moving fields (the reference). */
function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  let exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    exp = 1;
    while (!(mant & 0x400)) {
      mant <<= 1;
      exp--;
    }
    mant &= 0x3ff;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

const asF32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;

describe('f16 and bf16 to f32', () => {
  it('decodes the special halves', () => {
    expect(f16ToNumber(0x3c00)).toBe(1);
    expect(f16ToNumber(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(f16ToNumber(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f16ToNumber(0x0400)).toBe(2 ** -14); // smallest normal
    expect(f16ToNumber(0x7bff)).toBe(65504);
    expect(f16ToNumber(0xc000)).toBe(-2);
    expect(f16ToNumber(0x7c00)).toBe(Infinity);
    expect(f16ToNumber(0xfc00)).toBe(-Infinity);
    expect(f16ToNumber(0x7e00)).toBeNaN();
    expect(Object.is(f16ToNumber(0x8000), -0)).toBe(true);
  });

  it('matches the bitwise reference on all 65536 halves', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const out = f16BitsToFloat32(all);
    const outBits = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) {
      const expected = f16ToF32Bits(h);
      if (Number.isNaN(asF32(expected))) expect(out[h]).toBeNaN();
      else if (outBits[h] !== expected) expect.unreachable(`half 0x${h.toString(16)}: ${outBits[h]} != ${expected}`);
    }
  });

  it('takes bf16 as the top 16 bits of an f32, NaN payloads included', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const bits = new Uint32Array(bf16BitsToFloat32(all).buffer);
    for (let h = 0; h < 65536; h++) if (bits[h] !== h << 16 >>> 0) expect.unreachable(`bf16 0x${h.toString(16)}`);
  });

  it('converts tensors at unaligned offsets and rejects non-float dtypes by name', () => {
    const f32 = new Float32Array([1.5, -2.25, 3e-39, Infinity]);
    const buffer = new Uint8Array(1 + f32.byteLength);
    buffer.set(new Uint8Array(f32.buffer), 1);
    expect(toFloat32({ name: 'w', dtype: 'F32', shape: [4], bytes: buffer.subarray(1) })).toEqual(f32);
    const half = new Uint8Array([0, 0x00, 0x3c, 0x00, 0xc0]).subarray(1);
    expect(toFloat32({ name: 'h', dtype: 'F16', shape: [2], bytes: half })).toEqual(new Float32Array([1, -2]));
    expect(toFloat32({ name: 'b', dtype: 'BF16', shape: [2], bytes: half })).toEqual(new Float32Array([asF32(0x3c000000), -2]));
    const err = (() => {
      try {
        toFloat32({ name: 'model.layers.0.ids', dtype: 'I64', shape: [1], bytes: new Uint8Array(8) });
      } catch (e) {
        return e as AigridError;
      }
    })();
    expect(err?.code).toBe('ERR_DTYPE_UNSUPPORTED');
    expect(err?.message).toContain('model.layers.0.ids');
    expect(err?.message).toContain('I64');
  });
});

describe('planning reads', () => {
  const entry = (name: string, begin: number, end: number): TensorEntry => ({ name, dtype: 'U8', shape: [end - begin], begin, end });

  it('merges only tensors that touch, per file, up to the size cap', () => {
    const reads = planReads([
      { file: 'a', entry: entry('x3', 30, 40) },
      { file: 'a', entry: entry('x1', 10, 20) },
      { file: 'a', entry: entry('x2', 20, 30) },
      { file: 'a', entry: entry('x5', 50, 60) },
      { file: 'b', entry: entry('y', 40, 50) },
    ], 25);
    expect(reads.map((r) => [r.file, r.begin, r.end, r.tensors.map((t) => t.name)])).toEqual([
      ['a', 10, 30, ['x1', 'x2']],
      ['a', 30, 40, ['x3']],
      ['a', 50, 60, ['x5']],
      ['b', 40, 50, ['y']],
    ]);
  });

  it('tells layers apart by name', () => {
    expect(layerOf('model.layers.12.mlp.up_proj.weight')).toBe(12);
    expect(layerOf('transformer.h.3.attn.c_attn.weight')).toBe(3);
    expect(layerOf('model.embed_tokens.weight')).toBeUndefined();
    expect(tensorsOfLayers(['model.layers.1.a', 'model.layers.8.a', 'model.layers.16.a', 'lm_head.weight'], 8, 16)).toEqual(['model.layers.8.a']);
  });
});

describe('the browser entry', () => {
  it('never imports a node: module, directly or through its imports', () => {
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(/^(?:import|export)[^'"]*from\s+'([^']+)'/gm)) {
        expect(spec, `${file} imports ${spec}`).not.toMatch(/^node:/);
        if (spec!.startsWith('.')) visit(resolve(dirname(file), spec!));
      }
    };
    visit(resolve('client/model/checkpoint/index.ts'));
    expect(seen.size).toBeGreaterThan(8);
    expect([...seen].some((f) => f.endsWith('folder-source.ts'))).toBe(false);
  });
});
