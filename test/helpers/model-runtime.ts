// Shared pieces of the model runtime tests: one WebGPU context per test file, fixture checkpoints,
// a plain greedy loop through Head + Shards, and error assertions.
import { expect } from 'vitest';
import { openCheckpointNode } from '../../client/model/checkpoint/node.ts';
import type { CheckpointReader } from '../../client/model/checkpoint/reader.ts';
import type { Head } from '../../client/model/head.ts';
import type { Shard } from '../../client/model/shard.ts';
import { AigridError, type ErrorCode } from '../../protocol/index.ts';
import { GpuContext } from '../../kernels/context.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { modelDir, ReferenceSession, type ReferenceModel } from '../fixtures/index.ts';

let shared: Promise<GpuContext> | undefined;

/** One context per test file (vitest runs each file in its own process). */
export function gpuContext(): Promise<GpuContext> {
  shared ??= nodeGpu().then((gpu) => GpuContext.create({ gpu }));
  return shared;
}

export function openFixture(name: string): Promise<CheckpointReader> {
  return openCheckpointNode(modelDir(name));
}

/** Lowest index of the largest value. */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  return worst;
}

const range = (from: number, count: number) => Uint32Array.from({ length: count }, (_, i) => from + i);

/** Hidden states [T, H] of tokens at positions start.. through the head's embedding and each shard in turn. */
export async function runLayers(head: Head, shards: readonly Shard[], tokens: readonly number[], start: number, session: string): Promise<Float32Array> {
  const positions = range(start, tokens.length);
  let hidden = await head.embed(Uint32Array.from(tokens), positions);
  for (const shard of shards) hidden = await shard.forward(hidden, positions, session);
  return hidden;
}

export interface GreedyRun {
  tokens: number[];
  /** Logits [V] that chose each token. */
  logits: Float32Array[];
  /** Output of the last shard at each step ([T, H] for the prompt, then [1, H]). */
  hidden: Float32Array[];
}

/** Prefill the prompt, then decode one token at a time, always taking the argmax. */
export async function greedyRun(head: Head, shards: readonly Shard[], prompt: readonly number[], steps: number, session: string): Promise<GreedyRun> {
  const run: GreedyRun = { tokens: [], logits: [], hidden: [] };
  let hidden = await runLayers(head, shards, prompt, 0, session);
  let rows = prompt.length;
  for (let step = 0; step < steps; step++) {
    run.hidden.push(hidden);
    const logits = await head.logits(hidden, rows);
    run.logits.push(logits);
    const next = argmax(logits);
    run.tokens.push(next);
    if (step + 1 === steps) break;
    hidden = await runLayers(head, shards, [next], prompt.length + step, session);
    rows = 1;
  }
  for (const shard of shards) shard.release(session);
  return run;
}

/** The AigridError a promise rejects with, checked for its code and for each text in its message. */
export async function failure(promise: Promise<unknown>, code: ErrorCode, ...texts: string[]): Promise<AigridError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(AigridError);
  expect((err as AigridError).code, (err as Error).message).toBe(code);
  for (const text of texts) expect((err as AigridError).message).toContain(text);
  return err as AigridError;
}

/** Reference logits of each step of a greedy continuation. */
export function referenceSteps(ref: ReferenceModel, prompt: readonly number[], continuation: readonly number[]): Float64Array[] {
  const session = new ReferenceSession(ref);
  const steps = [session.append(prompt).at(-1)!];
  for (const t of continuation.slice(0, -1)) steps.push(session.append([t])[0]!);
  return steps;
}
