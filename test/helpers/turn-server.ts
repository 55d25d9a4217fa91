// A real TURN server for tests: Debian's coturn (`turnserver`) on 127.0.0.1 and a free port, with
// the TURN REST API's shared secret (use-auth-secret / static-auth-secret), as a child process that
// close() kills. Relays on 127.0.0.1, loopback peers allowed, no TLS, no CLI, nothing on disk
// outside its own temporary folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TURNSERVER = process.env.TURNSERVER_PATH ?? 'turnserver';

export interface TurnServer {
  port: number;
  /** The secret credentials are checked against (static-auth-secret). */
  secret: string;
  realm: string;
  /** turn:127.0.0.1:<port>?transport=udp */
  udpUrl: string;
  /** turn:127.0.0.1:<port>?transport=tcp */
  tcpUrl: string;
  /** What the server printed so far (for failure messages). */
  log(): string;
  close(): Promise<void>;
}

/** A port free for both TCP and UDP on 127.0.0.1 now. */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    // coturn takes the UDP port (and the one above it is avoided by --no-rfc5780).
    const udpFree = await new Promise<boolean>((resolve) => {
      const socket = createSocket('udp4');
      socket.once('error', () => resolve(false));
      socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free TCP+UDP port on 127.0.0.1');
}

function tcpAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startTurnServer(options: { secret?: string; realm?: string; timeoutMs?: number } = {}): Promise<TurnServer> {
  const secret = options.secret ?? `turn-secret-${Math.random().toString(36).slice(2)}`;
  const realm = options.realm ?? 'aigrid.test';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'aigrid-turn-'));
  let output = '';
  const child: ChildProcess = spawn(
    TURNSERVER,
    [
      '-n', // no configuration file: everything is on this command line
      '--listening-ip', '127.0.0.1',
      '--relay-ip', '127.0.0.1',
      '--listening-port', String(port),
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm', realm,
      '--fingerprint',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--no-rfc5780',
      '--no-software-attribute',
      '--allow-loopback-peers',
      '--min-port', '49152',
      '--max-port', '65535',
      '--userdb', join(dir, 'turndb'),
      '--pidfile', join(dir, 'turnserver.pid'),
      '--log-file', 'stdout',
      '--simple-log',
      '--verbose', // allocations and refusals are logged, so tests can see what the server did
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    if (spawnError) {
      await close();
      throw new Error(`could not run ${TURNSERVER} (apt-get install coturn): ${spawnError.message}`);
    }
    if (child.exitCode !== null) {
      await close();
      throw new Error(`turnserver exited with ${child.exitCode}:\n${output.slice(-4000)}`);
    }
    if (await tcpAnswers(port)) break;
    if (Date.now() > deadline) {
      await close();
      throw new Error(`turnserver did not listen on 127.0.0.1:${port} in time:\n${output.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    secret,
    realm,
    udpUrl: `turn:127.0.0.1:${port}?transport=udp`,
    tcpUrl: `turn:127.0.0.1:${port}?transport=tcp`,
    log: () => output,
    close,
  };
}
