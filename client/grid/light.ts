// The client's head in light mode (RemoteChainOptions.light): it holds no weights. embed() carries
// the token ids through as rows of width 1 for the chain to send to hop 0, and logits() passes on
// what the chain returned, which in light mode is already the last token's logits from the last hop.
import type { HeadLike } from '../model/generate.ts';
import { AigridError } from '../../protocol/index.ts';

/** Token ids travel as f32 rows; below 2^24 every integer is exact. */
const MAX_EXACT_ID = 1 << 24;

export const lightHead: HeadLike = {
  async embed(tokens: Uint32Array): Promise<Float32Array> {
    const beyond = tokens.findIndex((t) => t >= MAX_EXACT_ID);
    if (beyond >= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `light head: token id ${tokens[beyond]} is beyond ${MAX_EXACT_ID - 1}`);
    return Float32Array.from(tokens);
  },
  async logits(hidden: Float32Array): Promise<Float32Array> {
    return hidden;
  },
};
