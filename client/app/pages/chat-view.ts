// The Playground's transcript: one block per message; an assistant reply fills in as chunks arrive
// and ends with the route it took (which peer ran which layers) and its speed.
import type { GridReplyInfo, Hop } from '../../sdk/index.ts';
import { $, el, layersText } from '../dom.ts';

export interface ReplyView {
  setText(text: string): void;
  finish(info: GridReplyInfo | undefined, note?: string): void;
}

export function addMessage(role: 'user' | 'assistant', text: string): ReplyView {
  const content = el('div', { class: 'content' }, text);
  const block = el('div', { class: `message ${role}` }, el('div', { class: 'role' }, role), content);
  $('messages').append(block);
  block.scrollIntoView({ block: 'nearest' });
  return {
    setText(next) {
      content.textContent = next;
    },
    finish(info, note) {
      block.classList.add('done');
      const meta = el('div', { class: 'meta' });
      if (note) meta.append(el('span', { class: 'note' }, note));
      if (info) {
        meta.append(
          el('span', { class: 'route' }, 'Route: ', ...routeNodes(info.route)),
          el('span', { class: 'speed' }, `${info.tokensPerSecond.toFixed(1)} tok/s`),
          el('span', { class: 'ttft' }, `first token ${info.timeToFirstTokenS.toFixed(2)} s`),
        );
        if (info.failovers) meta.append(el('span', {}, `${info.failovers} failover(s)`));
      }
      block.append(meta);
    },
  };
}

function routeNodes(route: Hop[]): Node[] {
  if (!route.length) return [document.createTextNode('–')];
  const nodes: Node[] = [];
  for (const [i, hop] of route.entries()) {
    if (i) nodes.push(document.createTextNode(' → '));
    const attrs = { class: 'hop', 'data-peer-id': hop.peerId, 'data-start': String(hop.start), 'data-end': String(hop.end) };
    nodes.push(el('span', attrs, el('code', {}, hop.peerId), ` ${layersText(hop.start, hop.end)}`));
  }
  return nodes;
}

export function clearMessages(): void {
  $('messages').replaceChildren();
}
