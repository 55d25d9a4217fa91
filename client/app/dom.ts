// Small DOM helpers shared by the pages.

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no #${id} in the page`);
  return found as T;
};

/** An element with text, or with children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

export function row(cells: (Node | string)[], attrs: Record<string, string> = {}): HTMLTableRowElement {
  return el('tr', attrs, ...cells.map((c) => el('td', {}, c)));
}

export function errorText(err: unknown): string {
  const e = err as { code?: string; message?: string; hint?: string };
  const text = e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
  return e?.hint ? `${text} (${e.hint})` : text;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds % 60);
  const m = Math.floor(seconds / 60) % 60;
  const h = Math.floor(seconds / 3600);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

/** Layers [start, end) as people say it: "layer 2", "layers 0–1". */
export function layersText(start: number, end: number): string {
  return end - start === 1 ? `layer ${start}` : `layers ${start}–${end - 1}`;
}
