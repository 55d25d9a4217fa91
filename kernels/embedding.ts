// Token embedding lookup: ids u32 [T] and a table [V, H] (f32 or packed f16) give f32 [T, H]. A
// table larger than one storage binding comes in row parts, as linear weights do (weights.ts).
import { AigridError } from '../protocol/index.ts';
import code from './embedding.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import type { GpuTensor } from './tensor.ts';
import { uploadWeight } from './weights.ts';

const WG = 256;

export type TableDtype = 'f32' | 'f16';

/** Rows rowStart .. rowStart + tensor.shape[0] of a table, as one tensor [rows, H]. */
export interface TablePart {
  readonly tensor: GpuTensor;
  readonly rowStart: number;
}

/** A table [V, H] as row parts in order (an f32 or f16 GpuWeight is one, so tied heads serve as tables). */
export interface GpuTable {
  readonly shape: readonly [number, number];
  readonly dtype: TableDtype;
  readonly parts: readonly TablePart[];
}

export interface UploadTableOptions {
  /** Largest binding a part may need (default and ceiling: the adapter's limits). */
  maxBindingBytes?: number;
  label?: string;
}

/** Uploads a table split into as few row parts as the binding limits allow (ERR_GPU_LIMIT if one row does not fit). */
export function uploadTable(ctx: GpuContext, data: Float32Array, shape: readonly [number, number], dtype: TableDtype, options: UploadTableOptions = {}): GpuTable {
  const w = uploadWeight(ctx, data, shape, dtype, { maxBindingBytes: options.maxBindingBytes, label: options.label ?? 'table' });
  return { shape: w.shape, dtype, parts: w.parts };
}

/** Throws ERR_INVALID_ARGUMENT naming the first id outside [0, vocab); for ids held on the CPU. */
export function checkIds(ids: Uint32Array, vocab: number): void {
  for (let t = 0; t < ids.length; t++) {
    if (ids[t]! >= vocab) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `embedding: ids[${t}] = ${ids[t]} is outside the vocabulary of ${vocab}`);
    }
  }
}

/** The table's parts after checking that they hold rows 0 .. V in order, all [rows, H] of one dtype. */
function checkParts(table: GpuTable): readonly TablePart[] {
  const [vocab, hidden] = table.shape;
  let next = 0;
  for (const [i, part] of table.parts.entries()) {
    expectDtype('embedding', `table part ${i}`, part.tensor, [table.dtype]);
    expectShape('embedding', `table part ${i}`, part.tensor, [null, hidden]);
    if (part.rowStart !== next) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `embedding: table part ${i} starts at row ${part.rowStart}, expected ${next}`);
    }
    next += part.tensor.shape[0]!;
  }
  if (next !== vocab) throw new AigridError('ERR_SHAPE_MISMATCH', `embedding: table parts hold ${next} rows, the table has ${vocab}`);
  return table.parts;
}

export class EmbeddingOp {
  private readonly f32: GPUComputePipeline;
  private readonly f16: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.f32 = ctx.pipeline({ op: 'embedding', dtype: 'f32', workgroup: WG }, code, { WG, HALF: 0 });
    this.f16 = ctx.pipeline({ op: 'embedding', dtype: 'f16', workgroup: WG }, code, { WG, HALF: 1 });
  }

  /**
   * out[t] = table[ids[t]]; an id >= V gives a zero row (see checkIds to reject it up front). A
   * parted table takes one dispatch per part, each writing the rows whose ids it holds.
   */
  run(encoder: GPUCommandEncoder, ids: GpuTensor, table: GpuTensor | GpuTable, out: GpuTensor): void {
    expectDtype('embedding', 'ids', ids, ['u32']);
    expectShape('embedding', 'ids', ids, [null]);
    let parts: readonly TablePart[];
    if ('parts' in table) {
      if (table.dtype !== 'f32' && table.dtype !== 'f16') {
        throw new AigridError('ERR_DTYPE_UNSUPPORTED', `embedding: table is ${String(table.dtype)}; supported: f32, f16`);
      }
      parts = checkParts(table);
    } else {
      expectDtype('embedding', 'table', table, ['f32', 'f16']);
      expectShape('embedding', 'table', table, [null, null]);
      parts = [{ tensor: table, rowStart: 0 }];
    }
    expectDtype('embedding', 'out', out, ['f32']);
    const [vocab, hidden] = table.shape as [number, number];
    const tokens = ids.shape[0]!;
    expectShape('embedding', 'out', out, [tokens, hidden]);
    const n = tokens * hidden;
    if (n === 0) return;
    // An empty vocabulary has no part to dispatch: every id is out of range.
    if (parts.length === 0) return this.ctx.commands(encoder).clearBuffer(out.buffer, 0, out.byteLength);
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    for (const [i, { tensor, rowStart }] of parts.entries()) {
      const pipeline = tensor.dtype === 'f16' ? this.f16 : this.f32;
      const zeros = i === parts.length - 1 ? 1 : 0;
      const params = this.ctx.uniform(new Uint32Array([n, hidden, rowStart, tensor.shape[0]!, vocab, zeros]));
      this.ctx.dispatch(encoder, pipeline, [ids.buffer, tensor.buffer, out.buffer, params], grid);
    }
  }
}
