// Tokens to text as they are generated. A token may end inside a multi-byte character (the
// decoder then shows U+FFFD) or inside a stop string, so text is held back until it is certain:
// what has been emitted is never taken back.

export interface TextDelta {
  /** New text to emit (may be ''). */
  text: string;
  /** A stop string was generated: the text ends before it and the generation should stop. */
  stopped: boolean;
}

export class TextStream {
  private readonly tokens: number[] = [];
  private emitted = 0;
  private full = '';
  private done = false;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[] = [],
  ) {}

  /** All text emitted so far. */
  get text(): string {
    return this.full.slice(0, this.emitted);
  }

  push(token: number): TextDelta {
    if (this.done) return { text: '', stopped: true };
    this.tokens.push(token);
    this.full = this.decode(this.tokens);
    const hit = this.firstStop();
    if (hit >= 0) {
      this.done = true;
      return { text: this.take(Math.max(hit, this.emitted)), stopped: true };
    }
    return { text: this.take(this.safeEnd()), stopped: false };
  }

  /** The rest once generation ended without a stop string: nothing is held back any more. */
  flush(): string {
    if (this.done) return '';
    this.done = true;
    return this.take(this.full.replace(/\uFFFD+$/, '').length);
  }

  private take(end: number): string {
    if (end <= this.emitted) return '';
    const out = this.full.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }

  /** Where the earliest stop string begins in text not yet emitted (or overlapping its end), or -1. */
  private firstStop(): number {
    let first = -1;
    for (const stop of this.stops) {
      const from = Math.max(0, this.emitted - stop.length + 1);
      const at = this.full.indexOf(stop, from);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    return first;
  }

  /** How far text is certain: not a trailing partial character, not a possible start of a stop. */
  private safeEnd(): number {
    let end = this.full.length;
    while (end > this.emitted && this.full.charCodeAt(end - 1) === 0xfffd) end--;
    let hold = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, end); k > hold; k--) {
        if (this.full.slice(end - k, end) === stop.slice(0, k)) {
          hold = k;
          break;
        }
      }
    }
    end -= hold;
    return Math.max(end, this.emitted);
  }
}
