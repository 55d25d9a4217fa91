// Playground: chat with any model the network serves, streamed token by token, with sampling
// settings; each reply shows its route and speed. Stop aborts the stream (and the work on every
// peer of its route).
import type { ModelCoverage } from '../../../protocol/index.ts';
import { modelInfo, type ChatMessageParam, type ChatCompletionCreateParams, type GridReplyInfo, type ModelInfo } from '../../sdk/index.ts';
import { activity } from '../activity.ts';
import { connection, onConnection } from '../connection.ts';
import { $, el, errorText } from '../dom.ts';
import { joinFromBar } from '../header.ts';
import type { Page } from '../router.ts';
import { addMessage, clearMessages } from './chat-view.ts';
import { CreditsLine } from '../credits-line.ts';

const history: ChatMessageParam[] = [];
let models: ModelInfo[] = [];
let controller: AbortController | null = null;
let visible = false;

async function refreshModels(): Promise<void> {
  const grid = connection()?.grid;
  if (!grid) return renderModels([]);
  try {
    renderModels((await grid.models.list()).data);
  } catch (err) {
    $('chat-error').textContent = `Could not list the models: ${errorText(err)}`;
  }
}

function renderModels(list: ModelInfo[]): void {
  models = list;
  const select = $<HTMLSelectElement>('model');
  const chosen = select.value;
  select.replaceChildren(...list.map((m) => el('option', { value: m.id }, `${m.id} (${m.health})`)));
  if (list.some((m) => m.id === chosen)) select.value = chosen;
  renderHealth();
}

function renderHealth(): void {
  const info = models.find((m) => m.id === $<HTMLSelectElement>('model').value);
  const health = $('model-health');
  health.className = info ? `health-${info.health}` : '';
  health.textContent = info
    ? `${info.health}: ${info.coverage.layers} layers, each ready on at least ${Math.min(...info.coverage.ready)} peer(s) (replication ${info.coverage.replication})`
    : connection() ? 'No model is served on this network.' : 'Join a network to see its models.';
  const notice = $('model-notice');
  notice.textContent = info?.spec.notice ?? '';
  notice.hidden = !info?.spec.notice;
}

function settings(): Pick<ChatCompletionCreateParams, 'temperature' | 'top_p' | 'max_tokens' | 'seed'> {
  // An empty field is left out: the SDK's default (max_tokens: what the context leaves; seed: random).
  const num = (id: string) => {
    const value = $<HTMLInputElement>(id).value.trim();
    return value === '' ? undefined : Number(value);
  };
  const [maxTokens, seed] = [num('max-tokens'), num('seed')];
  return { temperature: num('temperature'), top_p: num('top-p'), ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}), ...(seed !== undefined ? { seed } : {}) };
}

async function send(): Promise<void> {
  const prompt = $<HTMLTextAreaElement>('prompt');
  const text = prompt.value.trim();
  if (!text || controller) return;
  $('chat-error').textContent = '';
  const { grid } = connection() ?? (await joinFromBar());
  if (!models.length) await refreshModels();
  const model = $<HTMLSelectElement>('model').value;
  if (!model) throw new Error(`network ${grid.network} serves no model yet: serve one, or wait for it to load`);
  const messages: ChatMessageParam[] = [...history, { role: 'user', content: text }];
  prompt.value = '';
  addMessage('user', text);
  const reply = addMessage('assistant', '');
  const mine = new AbortController();
  controller = mine;
  setBusy(true);
  let answer = '';
  let info: GridReplyInfo | undefined;
  try {
    const stream = await grid.chat.completions.create({ model, messages, stream: true, ...settings() }, { signal: mine.signal });
    for await (const chunk of stream) {
      answer += chunk.choices[0]?.delta.content ?? '';
      reply.setText(answer);
      info = chunk.aigrid ?? info;
    }
    reply.finish(info);
    if (info) activity.lastReplyTokensPerSecond = info.tokensPerSecond;
    history.push(messages.at(-1)!, { role: 'assistant', content: answer });
  } catch (err) {
    if (mine.signal.aborted) {
      reply.finish(undefined, 'Stopped.');
      history.push(messages.at(-1)!, { role: 'assistant', content: answer });
    } else {
      reply.finish(undefined, 'Failed.');
      $('chat-error').textContent = errorText(err);
    }
  } finally {
    controller = null;
    setBusy(false);
  }
}

function setBusy(busy: boolean): void {
  $<HTMLButtonElement>('send').disabled = busy;
  $<HTMLButtonElement>('chat-stop').disabled = !busy;
}

export const playgroundPage: Page = {
  show() {
    visible = true;
    void refreshModels();
  },
  hide() {
    visible = false;
  },
};

export function startPlayground(): void {
  // This tab's client key: what its generations spend on a metered network.
  const credits = new CreditsLine($('model-notice'), 'client-credits');
  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    send().catch((err) => ($('chat-error').textContent = errorText(err)));
  });
  $<HTMLTextAreaElement>('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      $<HTMLFormElement>('chat-form').requestSubmit();
    }
  });
  $('chat-stop').addEventListener('click', () => controller?.abort());
  $('chat-clear').addEventListener('click', () => {
    controller?.abort();
    history.length = 0;
    clearMessages();
  });
  $('models-refresh').addEventListener('click', () => void refreshModels());
  $('model').addEventListener('change', renderHealth);
  // The coordinator announces coverage changes.
  let unsubscribe = () => {};
  onConnection((c) => {
    unsubscribe();
    unsubscribe = () => {};
    credits.follow(c ? c.grid.credits : null);
    if (!c) return renderModels([]);
    // The coverage comes with the event: asking again would be answered by another event.
    const onModels = (coverage: ModelCoverage[]) => renderModels(coverage.map(modelInfo));
    c.mesh.signaling.on('models', onModels);
    unsubscribe = () => c.mesh.signaling.off('models', onModels);
    if (visible) void refreshModels();
  });
}
