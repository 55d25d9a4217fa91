// The QuickJS WebAssembly engines of one sandbox: the one in use and a spare loaded ahead. A
// fault leaves an engine's memory in an unknown state; the spare takes over at once (no other
// policy waits) and a new spare loads in the background.
import { newQuickJSWASMModule, newVariant, RELEASE_SYNC, type QuickJSWASMModule } from 'quickjs-emscripten';
import { evaluate } from './evaluate.ts';
import { DEFAULT_POLICY_LIMITS } from './limits.ts';

export class Engines {
  /** Engines replaced after a fault. */
  restarts = 0;
  private loading = false;
  private closed = false;

  private constructor(
    private readonly memoryBytes: number,
    private current: QuickJSWASMModule | undefined,
    private spare: QuickJSWASMModule | undefined,
  ) {}

  /** Engines whose WebAssembly memory may grow by memoryBytes past what QuickJS starts with. */
  static async load(memoryBytes: number): Promise<Engines> {
    const current = await loadEngine(memoryBytes);
    return new Engines(memoryBytes, current, await loadEngine(memoryBytes));
  }

  /** Whether an engine is loaded (false only between the loss of both and the next load). */
  get ready(): boolean {
    return this.current !== undefined;
  }

  /** The engine to use now; undefined while both were lost and a new one is still loading. */
  get(): QuickJSWASMModule | undefined {
    if (!this.current || !this.spare) this.refill();
    return this.current;
  }

  /** Drops an engine that faulted; the spare, if loaded, takes its place. */
  retire(engine: QuickJSWASMModule): void {
    if (engine !== this.current) return;
    this.restarts++;
    this.current = this.spare;
    this.spare = undefined;
    this.refill();
  }

  close(): void {
    this.closed = true;
    this.current = this.spare = undefined;
  }

  // One load at a time; a failed load is tried again on the next get() rather than in a loop.
  private refill(): void {
    if (this.loading || this.closed) return;
    this.loading = true;
    loadEngine(this.memoryBytes).then(
      (engine) => {
        this.loading = false;
        if (this.closed) return;
        if (!this.current) this.current = engine;
        else if (!this.spare) this.spare = engine;
        if (!this.current || !this.spare) this.refill();
      },
      () => {
        this.loading = false;
      },
    );
  }
}

const PAGE = 64 * 1024;
/** What the prebuilt module is built to start with (its data, stack and first heap). */
const INITIAL_BYTES = 16 * 1024 * 1024;

// A module of its own, not getQuickJS()'s shared one: a fault here touches nobody else's. Its
// memory is capped here because QuickJS's own limit is not a cap in this build: without
// malloc_usable_size under Emscripten it counts allocations, not bytes, so a policy keeping many
// large strings or typed arrays would grow the memory to 2 GiB (quickjs-emscripten issues 255
// and 271). Past the cap, malloc fails and the policy gets QuickJS's "out of memory".
async function loadEngine(memoryBytes: number): Promise<QuickJSWASMModule> {
  const memory = new WebAssembly.Memory({ initial: INITIAL_BYTES / PAGE, maximum: (INITIAL_BYTES + Math.ceil(memoryBytes / PAGE) * PAGE) / PAGE });
  const engine = await newQuickJSWASMModule(newVariant(RELEASE_SYNC, { wasmMemory: memory }));
  await warmUp(engine);
  return engine;
}

const WARM_UP_SOURCE = `function eval(parameters, input) {
  const scored = input.peers.map((p) => ({ id: p.id, score: p.latencyMs * parameters.w + p.sessions * Math.random() }));
  scored.sort((a, b) => a.score - b.score);
  return { best: scored[0].id, order: scored.map((s) => s.id).join(','), tags: JSON.parse(JSON.stringify(input.tags)) };
}`;
const WARM_UP_CALL = {
  parameters: '{"w":2}',
  input: JSON.stringify({ peers: Array.from({ length: 24 }, (_, i) => ({ id: `peer-${i}`, latencyMs: (i * 37) % 100, sessions: i % 5 })), tags: { a: [1, 2, 3], b: 'x' } }),
  context: '{"network":"warm-up"}',
  seed: 1,
};
const WARM_UP_LIMITS = { ...DEFAULT_POLICY_LIMITS, timeMs: 10_000 };

// WebAssembly starts in V8's baseline tier and moves hot functions up as they run: until then an
// evaluation can take 20 to 100 ms, past a policy's time limit. Evaluations run until 10 in a row
// are quick (V8 shares the compiled code, so a later engine of this process is quick at once),
// yielding to the event loop between slices.
async function warmUp(engine: QuickJSWASMModule): Promise<void> {
  let quick = 0;
  for (let i = 0; i < 200 && quick < 10; i++) {
    const start = performance.now();
    if (evaluate(engine, WARM_UP_SOURCE, WARM_UP_LIMITS, WARM_UP_CALL)[0] !== 'J') throw new Error('policy sandbox: the engine failed its warm-up');
    quick = performance.now() - start < 10 ? quick + 1 : 0;
    if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
