// Each served model's coverage: one cell per layer, coloured by how many peers have it ready
// against the replication asked for (none, loading, fewer copies than asked, enough).
import type { ModelInfo } from '../../sdk/index.ts';
import { $, el } from '../dom.ts';

export function renderModels(models: ModelInfo[] | null): void {
  const box = $('models');
  if (!models) return box.replaceChildren(el('p', {}, 'Join a network to see its models.'));
  if (!models.length) return box.replaceChildren(el('p', {}, 'No model served on this network.'));
  box.replaceChildren(...models.map(modelBlock));
}

function modelBlock(m: ModelInfo): HTMLElement {
  const { layers, replication, assigned, ready } = m.coverage;
  const cells = Array.from({ length: layers }, (_, i) => {
    const r = ready[i] ?? 0;
    const a = assigned[i] ?? 0;
    const level = r >= replication ? 'full' : r > 0 ? 'partial' : a > 0 ? 'loading' : 'none';
    return el('span', { class: `layer layer-${level}`, title: `layer ${i}: ${r} ready of ${a} assigned (replication ${replication})`, 'data-layer': String(i) }, String(r));
  });
  const min = Math.min(...ready);
  const facts = `${layers} layers · replication ${replication} · fewest ready copies ${min} · ${m.spec.weightDtype} · ${m.light ? 'light clients' : 'full clients'}`;
  return el(
    'div',
    { class: 'model', 'data-model': m.id },
    el('div', { class: 'model-head' }, el('strong', {}, m.id), ' ', el('span', { class: `health health-${m.health}` }, m.health)),
    el('div', { class: 'facts' }, facts),
    ...(m.spec.notice ? [el('p', { class: 'notice' }, m.spec.notice)] : []),
    el('div', { class: 'layers' }, ...cells),
  );
}
