// Tokenization through @huggingface/transformers: the tokenizer class AutoTokenizer would pick
// (tokenizer_config.json's tokenizer_class, "Fast" dropped), built from files our checkpoint
// reader already fetched and cached, so tokenizer and weights share one download path.
import { AigridError } from '../../protocol/index.ts';
import type { Checkpoint } from './checkpoint/reader.ts';

export interface ChatMessage {
  role: string;
  content: string;
}

/** The parts of a transformers.js tokenizer we use. */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): number[];
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  apply_chat_template(
    messages: ChatMessage[],
    options: { tokenize: boolean; add_generation_prompt: boolean; return_dict?: boolean; return_tensor?: boolean },
  ): string | number[];
  chat_template?: unknown;
}

type TokenizerClass = new (json: unknown, config: Record<string, unknown>) => HfTokenizer;

export class Tokenizer {
  private constructor(private readonly inner: HfTokenizer) {}

  static async fromFiles(tokenizerJson: unknown, tokenizerConfig: Record<string, unknown>): Promise<Tokenizer> {
    const transformers = (await import('@huggingface/transformers')) as unknown as Record<string, unknown>;
    const name = typeof tokenizerConfig.tokenizer_class === 'string' ? tokenizerConfig.tokenizer_class.replace(/Fast$/, '') : '';
    const cls = (transformers[name] ?? transformers.PreTrainedTokenizer) as TokenizerClass;
    try {
      return new Tokenizer(new cls(tokenizerJson, tokenizerConfig));
    } catch (err) {
      throw new AigridError('ERR_CHECKPOINT_CORRUPT', `tokenizer files are not usable: ${(err as Error).message}`);
    }
  }

  /** Reads tokenizer.json and tokenizer_config.json next to the checkpoint. */
  static async fromReader(reader: Checkpoint, signal?: AbortSignal): Promise<Tokenizer> {
    if (!reader.hasTokenizer) throw new AigridError('ERR_UNSUPPORTED_MODEL', 'the model has no tokenizer.json');
    const json = parseJson(await reader.readText('tokenizer.json', signal), 'tokenizer.json');
    const config = reader.hasTokenizerConfig
      ? (parseJson(await reader.readText('tokenizer_config.json', signal), 'tokenizer_config.json') as Record<string, unknown>)
      : {};
    return Tokenizer.fromFiles(json, config);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.inner.encode(text, { add_special_tokens: addSpecialTokens });
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.inner.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  get hasChatTemplate(): boolean {
    return Boolean(this.inner.chat_template);
  }

  /** Token ids of the conversation rendered with the model's chat template, ready for the reply. */
  encodeChat(messages: ChatMessage[], addGenerationPrompt = true): number[] {
    if (!this.hasChatTemplate) {
      throw new AigridError('ERR_UNSUPPORTED_MODEL', 'the tokenizer has no chat_template; send a raw prompt instead');
    }
    return this.inner.apply_chat_template(messages, {
      tokenize: true,
      add_generation_prompt: addGenerationPrompt,
      return_dict: false,
      return_tensor: false,
    }) as number[];
  }

  renderChat(messages: ChatMessage[], addGenerationPrompt = true): string {
    return this.inner.apply_chat_template(messages, { tokenize: false, add_generation_prompt: addGenerationPrompt }) as string;
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file} is not JSON: ${(err as Error).message.slice(0, 80)}`);
  }
}
