// Whether this browser contributes, decided in the service worker from what is stored (on/off and
// the settings) and what chrome.idle says, and passed to the engine. It runs at every start of the
// worker (so a restarted worker or browser picks up where it was), on every change of the stored
// settings or of the idle state, and on a periodic alarm that recreates the engine if it went away.
import type { ControlMessage, EngineConfig, ExtensionState, Settings } from '../protocol.ts';
import { readEnabled, readSettings } from '../settings.ts';
import { askEngine, ensureEngine, hasEngine } from './offscreen-document.ts';

/** Seconds without input after which chrome.idle reports the person away. */
export const IDLE_AFTER_S = 60;

type IdleState = ExtensionState['idle'];

function queryIdle(): Promise<IdleState> {
  return chrome.idle.queryState(IDLE_AFTER_S) as Promise<IdleState>;
}

export function engineConfig(settings: Settings, enabled: boolean, idle: IdleState): EngineConfig {
  const idleOk = !settings.onlyWhenIdle || idle !== 'active';
  return {
    signalUrl: settings.signalUrl,
    network: settings.network,
    memoryBudgetMB: settings.memoryBudgetMB,
    contribute: enabled && idleOk,
    onlyOnAC: settings.onlyOnAC,
  };
}

async function currentConfig(): Promise<EngineConfig> {
  const [settings, enabled, idle] = await Promise.all([readSettings(), readEnabled(), queryIdle()]);
  return engineConfig(settings, enabled, idle);
}

let queue: Promise<unknown> = Promise.resolve();

/** Brings the engine in line with the stored state (one reconcile at a time). */
export function reconcile(): Promise<void> {
  const run = queue.then(async () => {
    const config = await currentConfig();
    if (config.contribute) await ensureEngine();
    else if (!(await hasEngine())) return; // nothing runs, nothing to stop
    const configure: ControlMessage = { to: 'engine', type: 'configure', config };
    await askEngine(configure);
  });
  queue = run.catch(() => {});
  return run;
}

/** The configuration an engine asks for when its document starts. */
export function configForEngine(): Promise<EngineConfig> {
  return currentConfig();
}

/** What the popup shows. */
export async function extensionState(): Promise<ExtensionState> {
  const [settings, enabled, idle] = await Promise.all([readSettings(), readEnabled(), queryIdle()]);
  const engine = await askEngine({ to: 'engine', type: 'status' });
  const waiting = enabled && settings.onlyWhenIdle && idle === 'active' ? 'idle' : engine?.state === 'paused-battery' ? 'battery' : null;
  return { settings, enabled, idle, waiting, engine };
}
