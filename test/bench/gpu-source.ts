// A checkpoint held in memory for bench:gpu: random weights of a model's shapes, handed to Head and
// Shard as a TensorSource without writing gigabytes to disk first.
import type { FloatTensor, TensorInfo } from '../../client/model/checkpoint/reader.ts';
import type { TensorSource } from '../../client/model/load-weights.ts';
import type { Weights32 } from '../fixtures/weights.ts';

export function memorySource(config: Record<string, unknown>, generationConfig: Record<string, unknown>, weights: Weights32): TensorSource {
  const info = (name: string): TensorInfo => {
    const t = weights.get(name);
    if (!t) throw new Error(`memory checkpoint: no tensor ${name}`);
    return { name, dtype: 'F32', shape: [...t.shape], file: 'memory', byteLength: t.data.byteLength };
  };
  return {
    config,
    generationConfig,
    tensorInfo: async (names = weights.keys()) => [...new Set(names)].map(info),
    readFloat32: async (names) => {
      const out = new Map<string, FloatTensor>();
      for (const name of new Set(names)) out.set(name, { name, shape: info(name).shape, data: weights.get(name)!.data });
      return out;
    },
  };
}
