// A whole model served by peers, for a client that holds only the tokenizer and the sampler: the
// route's first stage embeds the token ids it is sent and its last stage runs the final norm and
// LM head, so a step sends ids and receives the last token's logits. A replay after a failover
// resends the ids, which the new first stage embeds to the same values.
import type { GenerateOptions, GenerateResult, TokenModel } from '../model/generate.ts';
import { AigridError } from '../../protocol/index.ts';
import { RouteRunner, type RouteOptions } from './route-runner.ts';

export interface RemoteModelOptions extends RouteOptions {
  /** Logits per step (the model's vocabulary). */
  vocabSize: number;
}

export class RemoteModel extends RouteRunner {
  /** The model as generate() takes it: token ids in, the last token's logits out. */
  readonly step: TokenModel = (tokens, positions, sessionId) => this.run(tokens, positions, sessionId);

  constructor(options: RemoteModelOptions) {
    const V = options.vocabSize;
    if (!Number.isInteger(V) || V < 1) throw new AigridError('ERR_INVALID_ARGUMENT', `vocabSize must be a positive integer, got ${V}`);
    super(options, {
      width: 1,
      alloc: (n) => new Uint32Array(n),
      stages: (hops) => hops.map(({ peerId, start, end }, i) => ({ peerId, start, end, ...(i === 0 ? { embed: true as const } : {}), ...(i === hops.length - 1 ? { head: true as const } : {}) })),
      vocabSize: V,
    });
  }

  /** generate() over this model's route, releasing the session afterwards. */
  generate(prompt: readonly number[], options: Omit<GenerateOptions, 'sessionId'> & { sessionId?: string }): Promise<GenerateResult> {
    return this.generateWith(this.step, prompt, options);
  }
}
