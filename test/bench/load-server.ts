// The signaling server of bench:load in a process of its own, so that its RSS and CPU time are the
// server's alone. Started by load.ts with an IPC channel:
//   node --import ./bin/register.js --expose-gc test/bench/load-server.ts '<SignalingServerOptions JSON>'
// It sends {type: 'ready', wsUrl} once listening; it answers {type: 'stats'} with its RSS and heap
// (after a full GC when --expose-gc is given), CPU time, and the frames and bytes it has sent
// (every ws send counted, whatever sends it); it profiles its CPU between {type: 'profile'} and
// {type: 'profile', file}; {type: 'close'} closes the server and exits, as does the parent going away.
import WebSocket from 'ws';
import { startSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { startProfile, stopProfile } from './profile.ts';

export type ServerMessage =
  | { type: 'ready'; wsUrl: string }
  | { type: 'error'; message: string }
  | { type: 'stats'; rssMB: number; heapMB: number; cpuMs: number; sent: number; sentBytes: number; sentByType: Record<string, number> }
  | { type: 'profiled' }
  | { type: 'closed' };

export type ServerCommand = { type: 'stats' } | { type: 'profile'; file?: string } | { type: 'close' };

const send = (msg: ServerMessage): void => void process.send?.(msg);

// Counts what the server sends: every frame goes through WebSocket#send.
let sent = 0;
let sentBytes = 0;
const sentByType: Record<string, number> = {};
const originalSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
  sent++;
  if (typeof data === 'string') {
    sentBytes += Buffer.byteLength(data);
    // Server messages are JSON.stringify of objects whose first key is `type`: {"type":"...
    const type = data.startsWith('{"type":"') ? data.slice(9, data.indexOf('"', 9)) : '?';
    sentByType[type] = (sentByType[type] ?? 0) + 1;
  } else if (data && typeof (data as { byteLength?: number }).byteLength === 'number') {
    sentBytes += (data as { byteLength: number }).byteLength;
  }
  return (originalSend as (...args: unknown[]) => void).call(this, data, ...rest);
} as typeof WebSocket.prototype.send;

const options = JSON.parse(process.argv[2] ?? '{}') as SignalingServerOptions;
const gc = (globalThis as { gc?: () => void }).gc;

try {
  const server = await startSignalingServer(options);
  process.on('message', (cmd: ServerCommand) => {
    void (async () => {
      if (cmd.type === 'stats') {
        gc?.();
        const mem = process.memoryUsage();
        const cpu = process.cpuUsage();
        send({
          type: 'stats',
          rssMB: mem.rss / 2 ** 20,
          heapMB: mem.heapUsed / 2 ** 20,
          cpuMs: (cpu.user + cpu.system) / 1000,
          sent,
          sentBytes,
          sentByType: { ...sentByType },
        });
      } else if (cmd.type === 'profile') {
        if (cmd.file) await stopProfile(cmd.file);
        else await startProfile();
        send({ type: 'profiled' });
      } else if (cmd.type === 'close') {
        await server.close();
        send({ type: 'closed' });
        process.exit(0);
      }
    })().catch((err: unknown) => send({ type: 'error', message: String(err) }));
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', wsUrl: server.wsUrl });
} catch (err) {
  send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
  process.exit(1);
}
