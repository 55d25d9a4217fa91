// The engine of the extension (it runs in the offscreen document, where WebGPU is available): one
// SDK Grid in the configured network, which answers the calls pages make through window.aigrid,
// and its contribution (a peer of its own, as in the web app) serving the layers the coordinator
// assigns while contribution is on. The grid is connected when either needs it and closed when
// neither does.
import type { LoadingProgress } from '../../../client/grid/peer.ts';
import type { AigridError } from '../../../protocol/errors.ts';
import { connect, type Contribution, type Grid } from '../../../client/sdk/index.ts';
import { watchPower } from '../power.ts';
import { toWireError, type EngineConfig, type EngineStatus, type PowerState } from '../protocol.ts';

const sameNetwork = (a: EngineConfig, b: EngineConfig) => a.signalUrl === b.signalUrl && a.network === b.network;

export class Engine {
  private config: EngineConfig | null = null;
  private readonly configured: Promise<void>;
  private markConfigured!: () => void;
  private power: PowerState = 'unknown';
  private webgpu = false;

  /** The connection, and the network it was opened for. */
  private grid: { config: EngineConfig; grid: Promise<Grid> } | null = null;
  /** Pages with an open Port: while there are any, the grid stays connected. */
  private pages = 0;

  private contribution: Contribution | null = null;
  private state: EngineStatus['state'] = 'off';
  private progress: LoadingProgress | null = null;
  private error: AigridError | null = null;
  /** Contribution changes run one at a time, in order. */
  private work: Promise<void> = Promise.resolve();

  constructor() {
    this.configured = new Promise((resolve) => (this.markConfigured = resolve));
    const onPower = (state: PowerState) => {
      this.power = state;
      void this.schedule();
    };
    void watchPower(onPower).then(onPower);
    void (navigator.gpu?.requestAdapter() ?? Promise.resolve(null)).then((a) => (this.webgpu = Boolean(a)), () => {});
  }

  /** Applies what the service worker asks for (the status tells how it goes). */
  configure(config: EngineConfig): Promise<void> {
    this.config = config;
    this.markConfigured();
    return this.schedule();
  }

  /** The grid for a page's calls (connected in the configured network on the first call). */
  async requests(): Promise<Grid> {
    await this.configured;
    return this.connection();
  }

  /** A page opened a Port (true) or closed it (false). */
  pageAttached(attached: boolean): void {
    this.pages += attached ? 1 : -1;
    if (this.pages === 0) void this.schedule(); // may close the grid
  }

  status(): EngineStatus {
    const c = this.config;
    const contribution = this.contribution;
    return {
      signalUrl: c?.signalUrl ?? '',
      network: c?.network ?? '',
      state: this.state,
      peerId: contribution?.peerId ?? null,
      memoryBudgetMB: c?.memoryBudgetMB ?? 0,
      assignments: contribution?.status() ?? [],
      progress: this.progress,
      tokensServed: contribution?.tokensServed ?? 0,
      power: this.power,
      webgpu: this.webgpu,
      error: this.error ? toWireError(this.error) : null,
    };
  }

  private connection(): Promise<Grid> {
    const config = this.config!;
    if (this.grid && !sameNetwork(this.grid.config, config)) this.disconnect();
    if (!this.grid) {
      const entry = { config, grid: connect({ signal: config.signalUrl, network: config.network, kind: 'extension', tasks: [] }) };
      this.grid = entry;
      entry.grid.catch(() => {
        if (this.grid === entry) this.grid = null; // the next call tries again
      });
    }
    return this.grid.grid;
  }

  private schedule(): Promise<void> {
    this.work = this.work.then(() => this.apply()).catch((err: AigridError) => {
      this.error = err;
      this.state = 'failed';
      this.stopContributing();
    });
    return this.work;
  }

  private async apply(): Promise<void> {
    const c = this.config;
    if (!c) return;
    if (this.grid && !sameNetwork(this.grid.config, c)) this.disconnect();
    const onBattery = c.onlyOnAC && this.power === 'battery';
    if (!c.contribute || onBattery) {
      this.stopContributing();
      this.state = c.contribute ? 'paused-battery' : 'off';
      this.error = null;
      if (this.pages === 0) this.disconnect();
      return;
    }
    if (this.contribution?.active && this.contribution.memoryBudgetMB === c.memoryBudgetMB) return;
    this.error = null;
    this.state = 'connecting';
    const grid = await this.connection();
    const contribution = await grid.contribute({ memoryBudgetMB: c.memoryBudgetMB }); // stops the one before
    contribution.on('progress', (p) => (this.progress = p));
    contribution.on('status', (s) => {
      if (s.state === 'ready') this.progress = null;
    });
    this.contribution = contribution;
    this.state = 'contributing';
  }

  /** Layers freed and the contribution's peer gone from the network. */
  private stopContributing(): void {
    this.contribution?.stop();
    this.contribution = null;
    this.progress = null;
  }

  /** Stops contributing and closes the grid (pages' calls in flight fail). */
  private disconnect(): void {
    this.stopContributing();
    const old = this.grid;
    this.grid = null;
    void old?.grid.then((g) => g.close(), () => {});
  }
}
