// Process-level safety of the `aigrid` command (bin/aigrid.js): a real `aigrid gateway` process
// that meets an unhandled rejection or an uncaught exception logs it with the command and the
// stack and keeps serving; a burst of uncaught exceptions ends it with exit code 70.
//
// How the faults get in: the product has no test hook. A working process has no known path to an
// unhandled rejection (each one found is a bug, fixed where it is), so the test injects them with
// Node's own `--import`: a small module loaded into the real command's process before its entry,
// which rejects a promise or throws from an event callback when the test writes a line to the
// child's stdin (so the fault comes after the command is up, never racing its start).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { waitFor } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));

const FAULTS = `
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text) => {
  for (const line of text.split('\\n')) {
    if (line === 'reject') Promise.reject(new Error('injected rejection'));
    // Each from its own callback, so lines that arrive together each throw.
    if (line === 'throw') setImmediate(() => { throw new Error('injected exception'); });
  }
});
`;

let server: SignalingServer;

beforeAll(async () => {
  server = await startSignalingServer({ heartbeatMs: 60_000 });
});

afterAll(async () => {
  await server?.close();
});

interface Running {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `aigrid gateway` with the fault module loaded; resolves once it prints its URL. */
async function startGatewayProcess(): Promise<Running> {
  const child = spawn(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(FAULTS)}`, BIN, 'gateway', '--signal', server.wsUrl, '--network', 'guards', '--port', '0'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, AIGRID_STATE_DIR: mkdtempSync(join(tmpdir(), 'aigrid-state-')) },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const found = /OpenAI-compatible API at (http:\/\/127\.0\.0\.1:\d+\/v1)\n/.exec(out);
      if (found) resolve(found[1]!);
    });
    void exited.then((code) => reject(new Error(`aigrid gateway exited (${code}): ${out}${err}`)));
  });
  return { child, url, stderr: () => err, exited };
}

describe('aigrid process guards', () => {
  it('logs an unhandled rejection and an uncaught exception with context and keeps serving', async () => {
    const gw = await startGatewayProcess();
    try {
      gw.child.stdin!.write('reject\n');
      await waitFor(() => gw.stderr().includes('injected rejection'), 10_000, 'the rejection logged');
      expect(gw.stderr()).toMatch(/aigrid gateway: unhandled rejection \(the process keeps running\): Error: injected rejection\n\s+at /);
      expect((await fetch(`${gw.url}/models`)).status).toBe(200);

      gw.child.stdin!.write('throw\n');
      await waitFor(() => gw.stderr().includes('injected exception'), 10_000, 'the exception logged');
      expect(gw.stderr()).toMatch(/aigrid gateway: uncaught exception \(the process keeps running\): Error: injected exception\n\s+at /);
      expect((await fetch(`${gw.url}/models`)).status).toBe(200);
      expect(gw.child.exitCode).toBeNull();
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
    }
  });

  it('ends a process caught in a loop of uncaught exceptions, with exit code 70', async () => {
    const gw = await startGatewayProcess();
    try {
      for (let i = 0; i < 11; i++) gw.child.stdin!.write('throw\n');
      expect(await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))])).toBe(70);
      expect(gw.stderr()).toContain('uncaught exception (11 in the last minute; exiting)');
    } finally {
      gw.child.kill('SIGTERM');
    }
  });
});
