// bench:gpu's comparison, run as its own process: @huggingface/transformers in Node (onnxruntime-node
// and its WebGPU execution provider, whose Dawn loads the same Vulkan driver as ours: the machine's
// GPU, or SwiftShader through VK_ICD_FILENAMES) on the ONNX export of the same weights. Greedy
// prefill and decode as test/bench/model-page.ts measures them. Prints one line: TJS {json}.
// Usage: gpu-transformers.ts <models dir> <model name> <comma-separated prompt ids> <decode tokens>
import { AutoModelForCausalLM, BaseStreamer, env, Tensor } from '@huggingface/transformers';

class Stamps extends BaseStreamer {
  at: number[] = [];
  tokens: number[] = [];
  override put(value: bigint[][]): void {
    this.at.push(performance.now());
    if (this.at.length > 1) this.tokens.push(Number(value[0]![0]!));
  }
  override end(): void {}
}

const [dir, name, promptArg, decodeArg] = process.argv.slice(2);
const prompt = promptArg!.split(',').map(Number);
const decodeTokens = Number(decodeArg);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = dir!;
const t0 = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(name!, { device: 'webgpu', dtype: 'fp32' });
const loadMs = performance.now() - t0;
const n = prompt.length;
const inputs = {
  input_ids: new Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, n]),
  attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
};
const run = async (newTokens: number) => {
  const stamps = new Stamps();
  await model.generate({ ...inputs, max_new_tokens: newTokens, min_new_tokens: newTokens, do_sample: false, streamer: stamps as never });
  return stamps;
};
await run(2); // warm-up
const s = await run(decodeTokens + 1);
const steps = Math.max(1, s.at.length - 2);
const result = { loadMs, prefillMs: s.at[1]! - s.at[0]!, decodeMs: (s.at.at(-1)! - s.at[1]!) / steps, tokens: s.tokens };
await model.dispose();
console.log(`TJS ${JSON.stringify(result)}`);
