// Worker threads for the GGML kernels: each instantiates the kernels' module on the same shared
// WebAssembly.Memory and runs one export with the arguments the calling thread writes to its slot
// of a shared Int32Array, then signals completion there (Atomics.notify / Atomics.wait). Node runs
// them as worker_threads (unref'd: they never keep the process alive), pages as Web Workers.
// The worker's code is a string, so it needs no bundler or TypeScript loader.

/** Int32 fields of a worker's slot: 16 (64 bytes, a cache line), so workers do not write to one line. */
const SLOT = 16;
const SEQ = 0, DONE = 1, FN = 2, ARGS = 3, FAILED = 15;
export const MAX_ARGS = FAILED - ARGS;

// A worker reports ready once instantiated (FAILED set if it could not be), then sleeps on SEQ; when
// it changes, it runs export FN (-1: exit) with the ARGS, records a failure in FAILED and publishes
// SEQ's value in DONE. Spinning briefly before sleeping keeps the wake-up cheap when linears come
// back to back, as they do in decode.
const WORKER_MAIN = `
function start({ module, memory, control, slot, names }, ready) {
  const c = new Int32Array(control, slot * ${SLOT * 4}, ${SLOT});
  let fns;
  try {
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    fns = names.map((name) => instance.exports[name]);
  } catch {
    c[${FAILED}] = 1;
  }
  ready();
  let seq = 0;
  for (;;) {
    for (let spin = 0; spin < 20000 && Atomics.load(c, ${SEQ}) === seq; spin++);
    Atomics.wait(c, ${SEQ}, seq);
    seq = Atomics.load(c, ${SEQ});
    const fn = c[${FN}];
    if (fn < 0) return;
    if (fns) {
      try {
        fns[fn](${Array.from({ length: MAX_ARGS }, (_, i) => `c[${ARGS + i}]`).join(', ')});
      } catch {
        c[${FAILED}] = 1;
      }
    }
    Atomics.store(c, ${DONE}, seq);
    Atomics.notify(c, ${DONE});
  }
}`;

interface WorkerHandle {
  post(message: unknown): void;
  /** Resolves on the worker's first message (it sends one when it is ready). */
  ready: Promise<void>;
  terminate(): void;
}

async function spawnNode(): Promise<WorkerHandle> {
  const specifier = 'node:worker_threads'; // not a static import: pages never load it
  const { Worker } = (await import(/* @vite-ignore */ specifier)) as typeof import('node:worker_threads');
  const boot = `const { parentPort } = require('node:worker_threads');
parentPort.once('message', (m) => start(m, () => parentPort.postMessage('ready')));`;
  // No execArgv: the parent's flags (a loader, --input-type=module) would make `require` undefined.
  const worker = new Worker(`${WORKER_MAIN}\n${boot}`, { eval: true, execArgv: [] });
  worker.unref();
  const ready = new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return { post: (m) => worker.postMessage(m), ready, terminate: () => void worker.terminate() };
}

function spawnWeb(): WorkerHandle {
  const boot = `self.onmessage = (e) => { self.onmessage = null; start(e.data, () => self.postMessage('ready')); };`;
  const url = URL.createObjectURL(new Blob([`${WORKER_MAIN}\n${boot}`], { type: 'text/javascript' }));
  const worker = new Worker(url);
  const ready = new Promise<void>((resolve, reject) => {
    worker.onmessage = () => resolve();
    worker.onerror = (e) => reject(new Error(e.message));
  });
  void ready.finally(() => URL.revokeObjectURL(url)).catch(() => {});
  return { post: (m) => worker.postMessage(m), ready, terminate: () => worker.terminate() };
}

const isNode = () => typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** Whether this thread may block in Atomics.wait (not a page's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Cores this runtime reports: os.availableParallelism() in Node, navigator.hardwareConcurrency in pages. */
export async function availableCores(): Promise<number> {
  if (isNode()) {
    const specifier = 'node:os';
    const os = (await import(/* @vite-ignore */ specifier)) as typeof import('node:os');
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return typeof navigator !== 'undefined' && navigator.hardwareConcurrency > 0 ? navigator.hardwareConcurrency : 1;
}

/** Workers that run exports of one module on one shared memory, started and awaited from this thread. */
export class KernelThreads {
  private readonly control: Int32Array;
  private readonly seqs: number[];
  /** Whether this thread sleeps in Atomics.wait; a page's main thread may not, so it spins. */
  private readonly blocking = canBlock();
  private destroyed = false;

  private constructor(private readonly workers: WorkerHandle[], control: SharedArrayBuffer) {
    this.control = new Int32Array(control);
    this.seqs = workers.map(() => 0);
  }

  /** `count` workers, each with `module` instantiated on `memory`; `names` are the exports `start` may run. */
  static async spawn(count: number, module: WebAssembly.Module, memory: WebAssembly.Memory, names: readonly string[]): Promise<KernelThreads> {
    const control = new SharedArrayBuffer(Math.max(1, count) * SLOT * 4);
    const workers: WorkerHandle[] = [];
    try {
      for (let slot = 0; slot < count; slot++) {
        const worker = isNode() ? await spawnNode() : spawnWeb();
        workers.push(worker);
        worker.post({ module, memory, control, slot, names: [...names] });
      }
      await Promise.all(workers.map((w) => w.ready));
    } catch (err) {
      for (const w of workers) w.terminate();
      throw err;
    }
    const threads = new KernelThreads(workers, control);
    if (threads.control.some((v, i) => i % SLOT === FAILED && v !== 0)) {
      threads.destroy();
      throw new Error('a kernel worker could not instantiate the module');
    }
    return threads;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Starts export `fn` (an index into `names`) on worker `w` with `args` (i32). */
  start(w: number, fn: number, args: readonly number[]): void {
    const at = w * SLOT;
    for (let i = 0; i < args.length; i++) this.control[at + ARGS + i] = args[i]!;
    this.control[at + FN] = fn;
    this.seqs[w] = (this.seqs[w]! + 1) | 0;
    Atomics.store(this.control, at + SEQ, this.seqs[w]!);
    Atomics.notify(this.control, at + SEQ);
  }

  /**
   * Blocks until worker `w` has finished what `start` gave it; false when the export failed. A page's
   * main thread spins instead of sleeping: it has just run its own share of the same call, so the
   * workers' shares are about done.
   */
  wait(w: number): boolean {
    const at = w * SLOT, seq = this.seqs[w]!;
    for (let spin = 0; (spin < 20000 || !this.blocking) && Atomics.load(this.control, at + DONE) !== seq; spin++);
    for (let done = Atomics.load(this.control, at + DONE); done !== seq; done = Atomics.load(this.control, at + DONE)) {
      Atomics.wait(this.control, at + DONE, done);
    }
    const failed = this.control[at + FAILED] !== 0;
    this.control[at + FAILED] = 0;
    return !failed;
  }

  /** Stops and terminates every worker. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.workers.forEach((worker, w) => {
      this.start(w, -1, []);
      worker.terminate();
    });
  }
}
