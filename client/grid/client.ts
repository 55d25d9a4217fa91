// The client's layers served by peers: a LayerChain for generate() whose route of peers runs every
// transformer layer, hidden states in and out (the client holds the embedding and the head). Inputs
// are kept as the wire delivered them (f16-rounded), so a replay after a failover sends the same
// values the old hops saw.
import { withHead, type GenerateOptions, type GenerateResult, type HeadLike, type LayerChain } from '../model/generate.ts';
import { wireRound } from '../../protocol/index.ts';
import { RouteRunner, type RouteOptions } from './route-runner.ts';

export type RemoteChainOptions = RouteOptions;

export class RemoteChain extends RouteRunner {
  /** The chain as generate() takes it. */
  readonly layers: LayerChain = (hidden, positions, sessionId) => this.forward(hidden, positions, sessionId);
  private readonly H: number;

  constructor(options: RemoteChainOptions) {
    super(options, {
      width: options.hiddenSize,
      alloc: (n) => new Float32Array(n),
      stages: (hops) => hops.map(({ peerId, start, end }) => ({ peerId, start, end })),
    });
    this.H = options.hiddenSize;
  }

  /** hidden [T, H] at positions (continuing the session; 0 starts it afresh) -> [T, H] after every layer. */
  async forward(hidden: Float32Array, positions: Uint32Array, sessionId: string): Promise<Float32Array> {
    const out = await this.run(wireRound(hidden), positions, sessionId);
    // A replay returns every row it ran; the caller asked for its own.
    return out.slice(out.length - positions.length * this.H);
  }

  /** generate() with this client's head over this chain, releasing the session afterwards. */
  generate(head: HeadLike, prompt: readonly number[], options: Omit<GenerateOptions, 'sessionId'> & { sessionId?: string }): Promise<GenerateResult> {
    return this.generateWith(withHead(head, this.layers), prompt, options);
  }
}
