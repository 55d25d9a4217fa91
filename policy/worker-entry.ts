// A worker of WorkerSandbox (worker-sandbox.ts): one PolicySandbox, one call at a time, each
// answered with the output or the named error. Policies are compiled once and kept by their
// name and code, a bounded number of them (the oldest go), since the code comes from operators.
import { parentPort, workerData } from 'node:worker_threads';
import { AigridError, errorMessage } from '../protocol/errors.ts';
import { PolicySandbox, type Policy } from './sandbox.ts';
import type { WorkerAnswer, WorkerJob } from './worker-sandbox.ts';

const MAX_COMPILED = 64;

const port = parentPort;
if (!port) throw new Error('policy/worker-entry.ts runs as a worker thread of WorkerSandbox');
const sandbox = await PolicySandbox.create({ limits: (workerData as { limits?: object } | undefined)?.limits ?? {} });
const compiled = new Map<string, Policy>();

function policyOf(job: WorkerJob): Policy {
  const key = `${job.name}\u0000${job.code}`;
  let policy = compiled.get(key);
  if (policy) {
    compiled.delete(key); // most recently used last
  } else {
    policy = sandbox.compile(job.code, { name: job.name });
    if (compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value!);
  }
  compiled.set(key, policy);
  return policy;
}

function answer(job: WorkerJob): WorkerAnswer {
  try {
    return { id: job.id, ok: true, output: policyOf(job).run(job.parameters, job.input, job.context) };
  } catch (err) {
    const error = err instanceof AigridError ? err : new AigridError('ERR_POLICY_FAILED', errorMessage(err));
    return { id: job.id, ok: false, code: error.code, message: error.message };
  }
}

port.on('message', (job: WorkerJob) => port.postMessage(answer(job)));
port.postMessage('ready');
