// Embedding tables split into row parts (as a vocabulary larger than one storage binding is):
// parts forced small with maxBindingBytes, ids in every part, repeated and out of range, against
// embeddingRef on the whole table; one part behaves as a plain tensor; malformed parts are named errors.
import type { GpuContext } from '../../kernels/context.ts';
import { embeddingRef } from '../../kernels/cpu/embedding.ts';
import { EmbeddingOp, uploadTable, type GpuTable, type TableDtype } from '../../kernels/embedding.ts';
import { packF16 } from '../../kernels/quant.ts';
import { partBytes } from '../../kernels/weights.ts';
import { mulberry32 } from '../helpers/random.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

// [vocab, hidden, rows per part]: odd hidden sizes put f16 parts on odd element counts (each part
// packs its own halves); the last part is short or full; H = 300 spans two workgroups per row.
const SHAPES: [number, number, number][] = [[100, 24, 30], [61, 37, 7], [50, 1, 16], [40, 300, 10]];

/** Both ends of every part, each twice, seeded ids, and ids past the vocabulary (V, V + 5, 2^32 - 1), shuffled. */
function partIds(seed: number, table: GpuTable): Uint32Array {
  const rand = mulberry32(seed);
  const vocab = table.shape[0];
  const ids: number[] = [vocab, vocab + 5, 0xffffffff];
  for (const { tensor, rowStart } of table.parts) {
    const last = rowStart + tensor.shape[0]! - 1;
    ids.push(rowStart, last, rowStart, last);
  }
  for (let i = 0; i < 16; i++) ids.push(Math.floor(rand() * vocab));
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return Uint32Array.from(ids);
}

function freeTable(table: GpuTable): void {
  for (const part of table.parts) part.tensor.buffer.destroy();
}

/** Looks ids up in the table split into parts of `rows` rows; out starts as sevens so that a row no dispatch writes shows. */
async function checkSplit(ctx: GpuContext, op: EmbeddingOp, dtype: TableDtype, [vocab, hidden, rows]: [number, number, number], seed: number): Promise<CaseOutcome> {
  const values = randomFloats(seed, vocab * hidden);
  const table = uploadTable(ctx, values, [vocab, hidden], dtype, { maxBindingBytes: partBytes(dtype, rows, hidden), label: 'split table' });
  // f16 rows round up to whole words, so a part may hold a row or so fewer than `rows`.
  if (table.parts.length < 3) return { ok: false, detail: `[${vocab}, ${hidden}] ${dtype} by ${rows} rows: ${table.parts.length} parts, expected 3 or more` };
  const ids = partIds(seed + 1, table);
  const tIds = ctx.tensor([ids.length], 'u32', ids);
  const out = ctx.tensor([ids.length, hidden], 'f32', new Float32Array(ids.length * hidden).fill(7));
  submit(ctx, (e) => op.run(e, tIds, table, out));
  const want = embeddingRef(ids, dtype === 'f16' ? packF16(values) : values, vocab, hidden);
  const got = await ctx.read(out);
  freeTable(table);
  const outcome = allclose(got, want, TOL[dtype].atol, TOL[dtype].rtol);
  return { ok: outcome.ok, detail: `[${vocab}, ${hidden}] ${dtype} in ${table.parts.length} parts: ${outcome.detail}` };
}

const cases: KernelCase[] = [
  {
    name: 'embedding parts: f32 and f16 tables in 3+ parts, ids in every part, repeated and out of range',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const outcomes: CaseOutcome[] = [];
      for (const [i, shape] of SHAPES.entries()) {
        outcomes.push(await checkSplit(ctx, op, 'f32', shape, 300 + 10 * i));
        outcomes.push(await checkSplit(ctx, op, 'f16', shape, 305 + 10 * i));
      }
      return all(outcomes);
    },
  },
  {
    name: 'embedding parts: one decode id in the last part; a one-part table equals the plain tensor',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const [vocab, hidden] = [90, 40];
      const values = randomFloats(400, vocab * hidden);
      const split = uploadTable(ctx, values, [vocab, hidden], 'f16', { maxBindingBytes: partBytes('f16', 20, hidden) });
      const whole = uploadTable(ctx, values, [vocab, hidden], 'f16');
      const plain = whole.parts[0]!.tensor;
      const one = ctx.tensor([1], 'u32', new Uint32Array([85]));
      const ids = partIds(401, split);
      const tIds = ctx.tensor([ids.length], 'u32', ids);
      const outs = [ctx.tensor([1, hidden], 'f32'), ctx.tensor([ids.length, hidden], 'f32'), ctx.tensor([ids.length, hidden], 'f32')];
      submit(ctx, (e) => {
        op.run(e, one, split, outs[0]!);
        op.run(e, tIds, whole, outs[1]!);
        op.run(e, tIds, plain, outs[2]!);
      });
      const half = packF16(values);
      const [decode, onePart, plainOut] = await Promise.all(outs.map((o) => ctx.read(o)));
      freeTable(split);
      freeTable(whole);
      return all([
        { ok: split.parts.length === 5 && whole.parts.length === 1, detail: `${split.parts.length} and ${whole.parts.length} parts` },
        allclose(decode!, embeddingRef(new Uint32Array([85]), half, vocab, hidden), TOL.f16.atol, TOL.f16.rtol),
        allclose(onePart!, embeddingRef(ids, half, vocab, hidden), TOL.f16.atol, TOL.f16.rtol),
        allclose(onePart!, plainOut!, 0, 0),
      ]);
    },
  },
  {
    name: 'embedding parts: an empty vocabulary gives zero rows',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const table = uploadTable(ctx, new Float32Array(0), [0, 8], 'f32');
      const ids = ctx.tensor([3], 'u32', new Uint32Array([0, 1, 7]));
      const out = ctx.tensor([3, 8], 'f32', new Float32Array(24).fill(7));
      submit(ctx, (e) => op.run(e, ids, table, out));
      return all([
        { ok: table.parts.length === 0, detail: `${table.parts.length} parts` },
        allclose(await ctx.read(out), new Float32Array(24), 0, 0),
      ]);
    },
  },
  {
    name: 'embedding parts: gaps, overlaps, short or wide parts, mixed dtypes and a row over the limit are named errors',
    async run(ctx) {
      const op = new EmbeddingOp(ctx);
      const a = ctx.tensor([4, 8], 'f32');
      const b = ctx.tensor([6, 8], 'f32');
      const ids = ctx.tensor([2], 'u32', new Uint32Array([0, 9]));
      const out = ctx.tensor([2, 8], 'f32');
      const table = (parts: GpuTable['parts'], vocab = 10, dtype: TableDtype = 'f32'): GpuTable => ({ shape: [vocab, 8], dtype, parts });
      const run = (t: GpuTable) => submit(ctx, (e) => op.run(e, ids, t, out));
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: b, rowStart: 5 }], 11))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: b, rowStart: 3 }], 9))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: a, rowStart: 4 }]))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: ctx.tensor([6, 9], 'f32'), rowStart: 4 }]))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: ctx.tensor([6, 8], 'f16'), rowStart: 4 }]))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => run(table([{ tensor: a, rowStart: 0 }, { tensor: b, rowStart: 4 }], 10, 'q8' as TableDtype))),
        await expectCode('ERR_GPU_LIMIT', () => uploadTable(ctx, new Float32Array(80), [10, 8], 'f32', { maxBindingBytes: 16 })),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
