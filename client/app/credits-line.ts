// The small line of credits the Contribute and Playground pages show: a key's balance on the
// network with the network's mode, asked again every CREDITS_REFRESH_MS while it is followed.
import type { CreditCalls, CreditStatement } from '../sdk/index.ts';
import { el, errorText } from './dom.ts';

export const CREDITS_REFRESH_MS = 10_000;

export function creditsText(s: CreditStatement): string {
  const how =
    s.rules.mode === 'free'
      ? 'a free network: work is recorded, nothing is charged'
      : `${s.rules.mode === 'metered' ? 'metered' : 'credits required'}: ${s.rules.pricePerToken} per token per layer`;
  return `Credits: ${s.balance} (${how})`;
}

export class CreditsLine {
  readonly element: HTMLParagraphElement;
  private timer: ReturnType<typeof setInterval> | undefined;
  private calls: CreditCalls | null = null;

  /** A hidden line placed after `anchor`, with this id. */
  constructor(anchor: HTMLElement, id: string) {
    this.element = el('p', { id, class: 'credits' });
    this.element.hidden = true;
    anchor.after(this.element);
  }

  /** Shows the balance these calls answer (now and every 10 s); null hides the line. */
  follow(calls: CreditCalls | null): void {
    clearInterval(this.timer);
    this.calls = calls;
    this.element.hidden = !calls;
    if (!calls) return;
    this.element.textContent = 'Credits: …';
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), CREDITS_REFRESH_MS);
  }

  private async refresh(): Promise<void> {
    const calls = this.calls;
    if (!calls) return;
    let text: string;
    try {
      text = creditsText(await calls.balance());
    } catch (err) {
      text = `Credits: not known (${errorText(err)})`;
    }
    if (this.calls === calls) this.element.textContent = text;
  }
}
