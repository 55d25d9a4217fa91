// Hash routes (#contribute, #playground, #network; #/playground works too): one page and one
// connection, so a tab keeps contributing while its person chats or watches the network. The query
// (?network=, ?signal=) stays as it is.
export const PAGES = ['contribute', 'playground', 'network'] as const;
export type PageName = (typeof PAGES)[number];

export interface Page {
  /** The page became visible. */
  show(): void;
  hide(): void;
}

export function pageOf(hash: string): PageName {
  const name = hash.replace(/^#\/?/, '');
  return (PAGES as readonly string[]).includes(name) ? (name as PageName) : 'contribute';
}

export function startRouter(pages: Record<PageName, Page>): void {
  let shown: PageName | null = null;
  const route = () => {
    const name = pageOf(location.hash);
    if (name === shown) return;
    if (shown) pages[shown].hide();
    for (const section of document.querySelectorAll<HTMLElement>('main > section')) section.hidden = section.dataset.page !== name;
    for (const link of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
      if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = `AIGrid · ${name[0]!.toUpperCase()}${name.slice(1)}`;
    shown = name;
    pages[name].show();
  };
  addEventListener('hashchange', route);
  route();
}
