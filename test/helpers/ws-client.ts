// A WebSocket test client for the signaling server: records every server message (checked
// against the protocol schema) and lets a test wait for the next one matching a predicate.
import WebSocket, { type ClientOptions } from 'ws';
import {
  parseServerMessage,
  signedHello,
  type Capabilities,
  type ClientMessage,
  type ServerMessage,
} from '../../protocol/index.ts';
import { testIdentity } from './identities.ts';

export const CAPS: Capabilities = {
  kind: 'node',
  gpu: null,
  memoryBudgetMB: 1024,
  throughput: { gflops: 12.5, backend: 'cpu' },
  agent: 'test',
};

/** The hello of the test identity `name` over `nonce` (a connection's challenge). */
export function hello(nonce: string, name: string, network = 'net', capabilities = CAPS): Promise<ClientMessage> {
  return signedHello(testIdentity(name), nonce, network, capabilities);
}

type Pick<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

interface Waiter {
  match: (m: ServerMessage) => boolean;
  resolve: (m: ServerMessage) => void;
}

export class TestClient {
  /** Every valid server message, in order, never consumed. */
  readonly log: ServerMessage[] = [];
  /** Frames the server sent that do not match its own schema (should stay empty). */
  readonly invalid: string[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private inbox: ServerMessage[] = [];
  private waiters: Waiter[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('message', (data) => {
      const text = String(data);
      const parsed = parseServerMessage(text);
      if (!parsed.ok) return void this.invalid.push(text);
      this.log.push(parsed.message);
      const i = this.waiters.findIndex((w) => w.match(parsed.message));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(parsed.message);
      else this.inbox.push(parsed.message);
    });
  }

  static open(url: string, options?: ClientOptions): Promise<TestClient> {
    const ws = new WebSocket(url, options);
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  /** Opens a socket, says hello as the test identity `name` and waits for the welcome. */
  static async join(url: string, name: string, network = 'net', options?: ClientOptions): Promise<TestClient> {
    const client = await TestClient.open(url, options);
    await client.hello(name, network);
    await client.next('welcome');
    return client;
  }

  /** This socket's challenge (the server's first frame). */
  async nonce(): Promise<string> {
    return (this.log.find((m) => m.type === 'challenge') as { nonce: string } | undefined)?.nonce ?? (await this.next('challenge')).nonce;
  }

  /** Signs this socket's challenge as the test identity `name` and sends the hello. */
  async hello(name: string, network = 'net', capabilities = CAPS): Promise<void> {
    this.send(await hello(await this.nonce(), name, network, capabilities));
  }

  send(message: ClientMessage | string | Uint8Array): void {
    this.ws.send(typeof message === 'string' || message instanceof Uint8Array ? message : JSON.stringify(message));
  }

  /** The first unconsumed message of this type (and matching `where`), waiting up to timeoutMs. */
  next<T extends ServerMessage['type']>(type: T, where: (m: Pick<T>) => boolean = () => true, timeoutMs = 5000): Promise<Pick<T>> {
    const match = (m: ServerMessage): boolean => m.type === type && where(m as Pick<T>);
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as Pick<T>);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Pick<T>);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${type} message within ${timeoutMs} ms; got ${JSON.stringify(this.log.map((m) => m.type))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Messages of one type received so far (consumed or not). */
  all<T extends ServerMessage['type']>(type: T): Pick<T>[] {
    return this.log.filter((m): m is Pick<T> => m.type === type);
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.close();
    return this.closed;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
