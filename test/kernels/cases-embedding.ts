import { castF32ToF16 } from '../../kernels/cpu/cast.ts';
import { embeddingRef } from '../../kernels/cpu/embedding.ts';
import { EmbeddingOp, checkIds } from '../../kernels/embedding.ts';
import { mulberry32 } from '../helpers/random.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

// [vocab, hidden, tokens]: T = 1 (decode) and 37, H = 1, H not a multiple of the workgroup, H = 4096.
const shapes: [number, number, number][] = [[1000, 96, 1], [1000, 96, 37], [50, 1, 37], [8, 4096, 3], [300, 257, 37]];

/** Seeded ids in the vocabulary, with a few out of it (V, V + 5, 2^32 - 1) when there is room. */
function randomIds(seed: number, tokens: number, vocab: number): Uint32Array {
  const rand = mulberry32(seed);
  const ids = Uint32Array.from({ length: tokens }, () => Math.floor(rand() * vocab));
  if (tokens > 3) ids.set([vocab, vocab + 5, 0xffffffff], 1);
  return ids;
}

const cases: KernelCase[] = [
  {
    name: 'embedding: f32 and f16 tables on seeded shapes, out-of-range ids give zero rows',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const outcomes = [];
      for (const [i, [vocab, hidden, tokens]] of shapes.entries()) {
        const ids = randomIds(100 + i, tokens, vocab);
        const table = randomFloats(110 + i, vocab * hidden);
        const half = castF32ToF16(table);
        const tIds = ctx.tensor([tokens], 'u32', ids);
        const t32 = ctx.tensor([vocab, hidden], 'f32', table);
        const t16 = ctx.tensor([vocab, hidden], 'f16', half);
        const out32 = ctx.tensor([tokens, hidden], 'f32');
        const out16 = ctx.tensor([tokens, hidden], 'f32');
        submit(ctx, (e) => {
          op.run(e, tIds, t32, out32);
          op.run(e, tIds, t16, out16);
        });
        outcomes.push(allclose(await ctx.read(out32), embeddingRef(ids, table, vocab, hidden), TOL.f32.atol, TOL.f32.rtol));
        outcomes.push(allclose(await ctx.read(out16), embeddingRef(ids, half, vocab, hidden), TOL.f16.atol, TOL.f16.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'embedding: checkIds, wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const ids = ctx.tensor([4], 'u32');
      const table = ctx.tensor([10, 8], 'f32');
      const out = ctx.tensor([4, 8], 'f32');
      checkIds(new Uint32Array([0, 9]), 10);
      return all([
        await expectCode('ERR_INVALID_ARGUMENT', () => checkIds(new Uint32Array([3, 10]), 10)),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ctx.tensor([4], 'f32'), table, out))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ids, ctx.tensor([10, 8], 'u32'), out))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ids, table, ctx.tensor([4, 7], 'f32')))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ids, ctx.tensor([80], 'f32'), out))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([2, 2], 'u32'), table, out))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
