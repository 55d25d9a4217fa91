// Shape checks shared by both backends' rows() and setRows(): a batch of sessions is stacked as
// rows, and attention takes each session's rows out and puts its result back.
import { AigridError } from '../../../protocol/index.ts';
import type { Tensor } from './types.ts';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Values per row of `rows`, once rows [start, start + count) exist there and `other` rows have as many. */
export function rowSize(op: string, rows: Tensor, other: Tensor, start: number, count: number): number {
  const row = size(rows.shape.slice(1));
  const fits = Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= rows.shape[0]!;
  if (!fits || size(other.shape.slice(1)) !== row) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: rows [${start}, ${start + count}) of [${other.shape.join(', ')}] do not fit [${rows.shape.join(', ')}]`);
  }
  return row;
}
