// The bar every page shares: the network to join, Join and Leave, the connection's state and this
// tab's peer id, and errors.
import { join, leave, onConnection, params } from './connection.ts';
import { $, errorText } from './dom.ts';

export function showError(err: unknown): void {
  $('error').textContent = err ? errorText(err) : '';
}

/** Joins the network named in the bar (as a client: no memory offered until Contribute). */
export function joinFromBar(): ReturnType<typeof join> {
  showError(null);
  $('state').textContent = 'connecting';
  return join({ network: $<HTMLInputElement>('network').value, memoryBudgetMB: 0, autoConnect: false });
}

export function startHeader(): void {
  let unsubscribe = () => {};
  onConnection((c) => {
    unsubscribe();
    $<HTMLButtonElement>('join').disabled = Boolean(c);
    $<HTMLButtonElement>('leave').disabled = !c;
    $('peer-id').textContent = c?.mesh.peerId ?? '–';
    $('state').textContent = c ? (c.mesh.signaling.connected ? 'open' : 'connecting') : 'not joined';
    if (!c) return;
    $<HTMLInputElement>('network').value = c.network;
    const onState = (s: string) => ($('state').textContent = s);
    const onWarning = (err: unknown) => showError(err);
    c.mesh.on('state', onState);
    c.mesh.on('warning', onWarning);
    unsubscribe = () => {
      c.mesh.off('state', onState);
      c.mesh.off('warning', onWarning);
    };
  });
  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    joinFromBar().catch(showError);
  });
  $('leave').addEventListener('click', () => leave());
  // Every page needs the network (models, peers), so the tab joins it at once as a client that
  // offers no memory: ?network=NAME, else the name in the bar ("default").
  const network = params.get('network');
  if (network) $<HTMLInputElement>('network').value = network;
  joinFromBar().catch((err: { code?: string }) => {
    if (err?.code !== 'ERR_ABORTED') showError(err); // a script's join() replaced this one
  });
}
