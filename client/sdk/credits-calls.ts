// grid.credits: this key's balance on the network with the network's mode and prices, and for the
// network's owner other keys' balances, grants, and the mode and prices (protocol/credits.ts).
// Asked over the signaling socket; each answer is matched by its requestId, a refusal by its ref.
import { AigridError, type ClientMessage, type CreditBalance, type CreditRules, type ServerMessage } from '../../protocol/index.ts';
import type { SignalingClient } from '../mesh/signaling-client.ts';

/** A key's balance, with the network's mode and prices. */
export interface CreditStatement {
  network: string;
  key: string;
  balance: number;
  rules: CreditRules;
}

export interface CreditCalls {
  /** This key's balance on the network (0 before it earned, spent or was granted any). */
  balance(): Promise<CreditStatement>;
  /** The network's owner: another key's balance, or the `top` largest balances (at most 100). */
  balances(query: { key: string } | { top: number }): Promise<CreditBalance[]>;
  /** The network's owner: mints `amount` credits to `key`; answers its balance after. */
  grant(key: string, amount: number): Promise<number>;
  /** The network's owner: sets the credits mode and prices (fields not given stay as they were). */
  setRules(rules: Partial<CreditRules>): Promise<CreditRules>;
}

const TIMEOUT_MS = 10_000;
let nextRequestId = 1;

type Credits = Extract<ServerMessage, { type: 'credits' }>;

export function creditCalls(signaling: () => SignalingClient): CreditCalls {
  const ask = (request: { type: 'credits'; key?: string; top?: number } | { type: 'grant'; key: string; amount: number }) => {
    const requestId = nextRequestId++;
    return exchange<Credits>(signaling(), { ...request, requestId } as ClientMessage, (m) => {
      if (m.type === 'credits' && m.requestId === requestId) return m;
      if (m.type === 'error' && m.ref === request.type && m.requestId === requestId) throw AigridError.fromJSON({ name: 'AigridError', code: m.code, message: m.message });
      return undefined;
    });
  };
  return {
    async balance() {
      const answer = await ask({ type: 'credits' });
      const { key, balance } = answer.balances[0]!;
      return { network: answer.network, key, balance, rules: answer.rules };
    },
    async balances(query) {
      return (await ask({ type: 'credits', ...query })).balances;
    },
    async grant(key, amount) {
      return (await ask({ type: 'grant', key, amount })).balances[0]!.balance;
    },
    async setRules(rules) {
      // A refused policy names no request: the first policy refusal after it is its answer.
      const answer = await exchange(signaling(), { type: 'policy', credits: rules }, (m) => {
        if (m.type === 'policy') return m;
        if (m.type === 'error' && m.ref === 'policy') throw AigridError.fromJSON({ name: 'AigridError', code: m.code, message: m.message });
        return undefined;
      });
      if (!answer.credits) throw new AigridError('ERR_NOT_AVAILABLE', 'the server keeps no credits');
      return answer.credits;
    },
  };
}

/** Sends one message and waits for the server's message that `accept` returns (or throws on). */
function exchange<T>(signaling: SignalingClient, message: ClientMessage, accept: (m: ServerMessage) => T | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signaling.off('message', onMessage);
    };
    const onMessage = (m: ServerMessage) => {
      let value: T | undefined;
      try {
        value = accept(m);
      } catch (err) {
        done();
        return reject(err);
      }
      if (value === undefined) return;
      done();
      resolve(value);
    };
    const timer = setTimeout(() => {
      done();
      reject(new AigridError('ERR_SIGNALING_TIMEOUT', `no ${message.type} answer from the server in ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    signaling.on('message', onMessage);
    if (!signaling.send(message)) {
      done();
      reject(new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server'));
    }
  });
}
