// The one way the grid opens a served model's weights: a CheckpointOpener takes the model's source
// (reference, mirror, revision) and answers a Checkpoint. Clients open one for the tokenizer
// and head, serving peers for their layers. `checkpointOpener` adapts a reference opener
// (openCheckpoint in pages, openCheckpointNode in Node) with fixed options, e.g. a cache.
import type { ModelSpec } from '../../../protocol/index.ts';
import type { Checkpoint, OpenCheckpointOptions } from './reader.ts';

/** Where a model's weights are: all an opener needs of its spec. */
export type ModelSource = Pick<ModelSpec, 'source' | 'baseUrl' | 'revision'>;

export type CheckpointOpener = (model: ModelSource, signal?: AbortSignal) => Promise<Checkpoint>;

type OpenByRef<O extends OpenCheckpointOptions> = (ref: string, options: O) => Promise<Checkpoint>;

export function checkpointOpener<O extends OpenCheckpointOptions>(open: OpenByRef<O>, options: Omit<O, 'baseUrl' | 'revision' | 'signal'>): CheckpointOpener {
  return (model, signal) => open(model.source, { ...options, baseUrl: model.baseUrl, revision: model.revision, signal } as O);
}
