// Checks before every dispatch: a wrong shape or dtype is a named error, never a silent
// out-of-bounds read on the GPU.
import { AigridError } from '../protocol/index.ts';
import type { DType, GpuTensor } from './tensor.ts';

/** Expected dims: a number must match exactly; null accepts any size. */
export function expectShape(op: string, name: string, tensor: GpuTensor, expected: readonly (number | null)[]): void {
  const ok = tensor.shape.length === expected.length && expected.every((d, i) => d === null || d === tensor.shape[i]);
  if (!ok) {
    const want = expected.map((d) => (d === null ? '*' : String(d))).join(', ');
    throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: ${name} has shape [${tensor.shape.join(', ')}], expected [${want}]`);
  }
}

export function expectDtype(op: string, name: string, tensor: GpuTensor, allowed: readonly DType[]): void {
  if (!allowed.includes(tensor.dtype)) {
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `${op}: ${name} is ${tensor.dtype}; supported: ${allowed.join(', ')}`);
  }
}

export function expectInteger(op: string, name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: ${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}
