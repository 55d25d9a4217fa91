// Workgroup grids for one-thread-per-element kernels, folded into 2-D past the per-dimension cap.
// Kernels compute the flat index as gid.x + gid.y * num_workgroups.x * WG.
import { AigridError } from '../protocol/index.ts';

export function elementGrid(elements: number, workgroupSize: number, maxPerDimension: number): [number, number] {
  const groups = Math.ceil(elements / workgroupSize);
  if (groups <= maxPerDimension) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / maxPerDimension);
  if (y > maxPerDimension) {
    throw new AigridError('ERR_GPU_LIMIT', `${elements} elements need more than maxComputeWorkgroupsPerDimension^2 workgroups`);
  }
  return [maxPerDimension, y];
}
