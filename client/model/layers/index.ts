// The layer implementation of each model family, and the config fields the runtime would have to
// ignore to run a checkpoint (refused by name rather than computed wrongly).
import { AigridError } from '../../../protocol/index.ts';
import type { ModelConfig } from '../config.ts';
import { gpt2Arch } from './gpt2.ts';
import type { LayerArch } from './layer.ts';
import { gemmaArch } from './gemma.ts';
import { llamaArch } from './llama.ts';

export type { Layer, LayerArch } from './layer.ts';

export function layerArch(config: ModelConfig): LayerArch {
  switch (config.family) {
    case 'llama':
      return llamaArch;
    case 'gemma':
      return gemmaArch;
    case 'gpt2':
      return gpt2Arch;
    default:
      throw new AigridError('ERR_UNSUPPORTED_MODEL', `no layer implementation for the ${String(config.family)} family`);
  }
}

/** config.json fields beyond parseConfig's checks that change the computation. */
export function checkRuntimeSupport(json: Record<string, unknown>, config: ModelConfig): void {
  const refuse = (field: string) => {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `config.json ${field} = ${JSON.stringify(json[field])} is not supported`);
  };
  // Pre-quantized checkpoints (GPTQ, AWQ, bitsandbytes) store integer tensors in their own layouts.
  if (json.quantization_config !== undefined && json.quantization_config !== null) refuse('quantization_config');
  if (config.family === 'gpt2') {
    if (json.scale_attn_weights === false) refuse('scale_attn_weights');
    if (json.add_cross_attention === true) refuse('add_cross_attention');
  }
}
