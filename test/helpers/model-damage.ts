// Damaged copies of fixture checkpoints: a model folder copied to a temp dir, then its safetensors
// rewritten (tensors dropped, reshaped, retyped, their bytes overwritten) or cut short.
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeSafetensors, parseHeader, type TensorToWrite } from '../../client/model/checkpoint/safetensors.ts';

export async function copyModel(from: string, to: string): Promise<string> {
  await cp(from, to, { recursive: true });
  return to;
}

/** The tensors of a safetensors file in file order, with their raw bytes. */
export async function readTensorsRaw(file: string): Promise<Record<string, TensorToWrite>> {
  const bytes = new Uint8Array(await readFile(file));
  const header = parseHeader(bytes, bytes.byteLength, file);
  const entries = [...header.tensors.values()].sort((a, b) => a.begin - b.begin);
  return Object.fromEntries(entries.map((e) => [e.name, { dtype: e.dtype, shape: e.shape, data: bytes.slice(e.begin, e.end) }]));
}

/** Rewrites a model's model.safetensors after `edit` changes its tensors in place. */
export async function editSafetensors(dir: string, edit: (tensors: Record<string, TensorToWrite>) => void): Promise<void> {
  const file = join(dir, 'model.safetensors');
  const tensors = await readTensorsRaw(file);
  edit(tensors);
  await writeFile(file, encodeSafetensors(tensors, { format: 'pt' }));
}

export async function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): Promise<void> {
  const file = join(dir, 'config.json');
  const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(config);
  await writeFile(file, JSON.stringify(config));
}

/** Keeps the first `keep` bytes of a file. */
export async function truncateFile(file: string, keep: number): Promise<void> {
  const bytes = await readFile(file);
  await writeFile(file, bytes.subarray(0, keep));
}
