// One evaluation in a fresh QuickJS runtime and context: nothing a policy did outlives it, so
// policies cannot see each other and the same call gives the same answer. Only strings cross
// (the source and the inputs' JSON in, the runner's answer out); no host function is ever
// given to the context.
import { DefaultIntrinsics, type QuickJSContext, type QuickJSHandle, type QuickJSWASMModule } from 'quickjs-emscripten';
import type { PolicyLimits } from './limits.ts';
import { PRELUDE } from './prelude.ts';

/** The JSON text of one call's arguments, and the seed of its Math.random. */
export interface Call {
  parameters: string;
  input: string;
  context: string;
  seed: number;
}

/**
 * The engine itself failed: the host's stack overflowed inside it, or QuickJS aborted on an
 * assertion. Its state is unknown, so it is never used again (not even to dispose handles).
 */
export class EngineFault extends Error {
  override name = 'EngineFault';
}

// No clock: a policy gets the time, when it needs it, from the hook's context.
const INTRINSICS = { ...DefaultIntrinsics, Date: false };

/**
 * Runs the prelude, then the policy's script and, given a call, its eval. Answers the runner's
 * string (see prelude.ts), or 'T' when the time ran out; throws EngineFault.
 */
export function evaluate(engine: QuickJSWASMModule, source: string, limits: PolicyLimits, call?: Call): string {
  let interrupted = false;
  const deadline = performance.now() + limits.timeMs;
  try {
    const runtime = engine.newRuntime();
    // In this build QuickJS's limit refuses any one allocation above it and counts allocations,
    // not bytes; the engine's capped WebAssembly memory (engine.ts) bounds the total.
    runtime.setMemoryLimit(limits.memoryBytes);
    runtime.setMaxStackSize(limits.stackBytes);
    // QuickJS asks at every 10,000th branch or call, and once told to stop throws an error the
    // policy cannot catch. A native call (JSON.stringify of a large value, a scan of a long
    // string) runs to its end between two asks, so a loop of such calls can overrun the limit by
    // seconds: a host facing hostile policies runs the sandbox in a worker it can terminate.
    runtime.setInterruptHandler(() => (interrupted ||= performance.now() > deadline));
    const context = runtime.newContext({ intrinsics: INTRINSICS });
    const answer = runScripts(context, source, limits, call);
    context.dispose();
    runtime.dispose();
    return interrupted ? 'T' : answer;
  } catch (cause) {
    throw new EngineFault(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

// Every handle made here is disposed before returning (QuickJS asserts on leaks when the runtime
// is freed); on a host exception nothing is, as the engine is abandoned.
function runScripts(context: QuickJSContext, source: string, limits: PolicyLimits, call: Call | undefined): string {
  const prelude = context.evalCode(PRELUDE, 'prelude.js');
  if (prelude.error) {
    prelude.error.dispose();
    return 'Lthe sandbox could not start within its limits';
  }
  const runner = prelude.value;
  const args: QuickJSHandle[] = [
    context.newString(source),
    context.newNumber(call?.seed ?? 0),
    // As many elements as a dense array the heap could hold (8 bytes a value).
    context.newNumber(Math.floor(limits.memoryBytes / 8)),
    context.newNumber(limits.maxOutputLength),
  ];
  if (call) args.push(context.newString(call.parameters), context.newString(call.input), context.newString(call.context));
  const result = context.callFunction(runner, context.undefined, args);
  for (const arg of args) arg.dispose();
  runner.dispose();
  if (result.error) {
    // Only what the runner cannot catch gets here: the interrupt, or memory or stack running out
    // while it describes an error. The value is not read: it may be anything the policy made.
    result.error.dispose();
    return 'Lthe policy ran out of memory or stack';
  }
  const answer = context.typeof(result.value) === 'string' ? context.getString(result.value) : 'Lthe sandbox gave no answer';
  result.value.dispose();
  return answer;
}
