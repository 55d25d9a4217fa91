// Operators' policies: JavaScript run in a QuickJS sandbox (WebAssembly), with no host access,
// limits on time, memory, stack and the size of what crosses, and no source of nondeterminism.
//
// A policy is a script that defines a global function eval:
//
//   function eval(parameters, input, context) {
//     return input.routes.find((r) => r.hops <= parameters.maxHops) ?? null;
//   }
//
// (or, in strict code, `globalThis.eval = (parameters, input, context) => ...`). It gets its three
// arguments as JSON values and returns a JSON value (plain objects, arrays, strings, finite
// numbers, booleans, null); anything else is refused, never coerced. Each evaluation runs in a
// fresh runtime: nothing is kept between calls. There is no Date (time comes in context when a
// hook passes it), Math.random is seeded from the arguments, and eval/Function cannot compile code.
import { AigridError } from '../protocol/errors.ts';
import { decodeOutput, encodeCall } from './call.ts';
import { Engines } from './engine.ts';
import { EngineFault, evaluate, type Call } from './evaluate.ts';
import { DEFAULT_POLICY_LIMITS, policyLimits, type PolicyLimits } from './limits.ts';

export interface CompileOptions {
  /** Names the policy in errors, logs and failure counts (default "policy"). */
  name?: string;
  /** Limits of this policy, over the sandbox's (all but memoryBytes). */
  limits?: Partial<Omit<PolicyLimits, 'memoryBytes'>>;
}

export interface SandboxStats {
  /** Evaluations run, compile checks included. */
  evaluations: number;
  /** Engines replaced after a fault (each a policy that overflowed the host's stack or broke QuickJS). */
  engineRestarts: number;
  /** False while both engines were lost and a new one loads: evaluations fail with ERR_POLICY_LIMIT meanwhile. */
  engineReady: boolean;
}

/** One per process: loads QuickJS's WebAssembly once (and a spare), then compiles and runs policies synchronously. */
export class PolicySandbox {
  private evaluations = 0;
  private destroyed = false;

  private constructor(
    private readonly engines: Engines,
    /** Limits of every policy, unless its compile options lower or raise them. */
    readonly limits: Readonly<PolicyLimits>,
  ) {}

  static async create(options: { limits?: Partial<PolicyLimits> } = {}): Promise<PolicySandbox> {
    const limits = policyLimits(DEFAULT_POLICY_LIMITS, options.limits, 'sandbox');
    return new PolicySandbox(await Engines.load(limits.memoryBytes), Object.freeze(limits));
  }

  /**
   * Checks a policy: its script must run (without its arguments) within its limits and define
   * function eval; ERR_POLICY_INVALID says why not.
   */
  compile(source: string, options: CompileOptions = {}): Policy {
    const name = options.name ?? 'policy';
    if (typeof name !== 'string' || name.length === 0 || name.length > 128) {
      throw new AigridError('ERR_INVALID_ARGUMENT', 'policy name: expected 1 to 128 characters');
    }
    const limits = Object.freeze(policyLimits(this.limits, options.limits, 'policy'));
    const quoted = JSON.stringify(name);
    if (typeof source !== 'string') throw new AigridError('ERR_POLICY_INVALID', `policy ${quoted}: the source is not a string`);
    if (source.length > limits.maxSourceLength) {
      throw new AigridError('ERR_POLICY_INVALID', `policy ${quoted}: the source is ${source.length} characters, more than the ${limits.maxSourceLength} allowed`);
    }
    let answer: string;
    try {
      answer = this.evaluate(source, limits, undefined);
    } catch (err) {
      if (!(err instanceof EngineFault)) throw err;
      throw new AigridError('ERR_POLICY_INVALID', `policy ${quoted}: its script broke the sandbox's engine (nested too deeply?): ${err.message}`);
    }
    if (answer !== 'J') {
      const why = answer[0] === 'T' ? `its script ran past the time limit of ${limits.timeMs} ms` : clean(answer.slice(1));
      throw new AigridError('ERR_POLICY_INVALID', `policy ${quoted} is invalid: ${why}`);
    }
    return new Policy(name, source, limits, (call) => this.evaluate(source, limits, call));
  }

  stats(): SandboxStats {
    return { evaluations: this.evaluations, engineRestarts: this.engines.restarts, engineReady: this.engines.ready };
  }

  /** Lets the engines go; compile and run fail afterwards. */
  destroy(): void {
    this.destroyed = true;
    this.engines.close();
  }

  private evaluate(source: string, limits: PolicyLimits, call: Call | undefined): string {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'policy sandbox: used after destroy()');
    const engine = this.engines.get();
    if (!engine) throw new AigridError('ERR_POLICY_LIMIT', 'the policy sandbox is loading a new engine after a fault; try again shortly');
    this.evaluations++;
    try {
      return evaluate(engine, source, limits, call);
    } catch (err) {
      if (err instanceof EngineFault) this.engines.retire(engine);
      throw err;
    }
  }
}

/** A checked policy. run() is synchronous and throws only AigridErrors. */
export class Policy {
  /** Set when an evaluation broke the engine: it would again, so it no longer runs. */
  private fault: string | undefined;

  constructor(
    readonly name: string,
    readonly source: string,
    readonly limits: Readonly<PolicyLimits>,
    private readonly evaluateCall: (call: Call) => string,
  ) {}

  /** eval(parameters, input, context) in the sandbox: its output, or ERR_POLICY_FAILED, _LIMIT, _OUTPUT or _INVALID. */
  run(parameters: unknown, input: unknown, context: unknown): unknown {
    const quoted = JSON.stringify(this.name);
    if (this.fault !== undefined) throw new AigridError('ERR_POLICY_LIMIT', `policy ${quoted} is disabled: it broke the sandbox's engine (${this.fault})`);
    const call = encodeCall(parameters, input, context, this.limits, this.name);
    let answer: string;
    try {
      answer = this.evaluateCall(call);
    } catch (err) {
      if (!(err instanceof EngineFault)) throw err;
      this.fault = err.message;
      throw new AigridError('ERR_POLICY_LIMIT', `policy ${quoted} broke the sandbox's engine (the host's stack?): ${err.message}`);
    }
    const text = answer.slice(1);
    switch (answer[0]) {
      case 'J':
        return decodeOutput(text, this.limits, this.name);
      case 'T':
        throw new AigridError('ERR_POLICY_LIMIT', `policy ${quoted} ran past its time limit of ${this.limits.timeMs} ms`);
      case 'L':
      case 'S':
        throw new AigridError('ERR_POLICY_LIMIT', `policy ${quoted} hit a limit: ${clean(text)}`);
      case 'F':
        throw new AigridError('ERR_POLICY_FAILED', `policy ${quoted} failed: ${clean(text)}`);
      case 'O':
        throw new AigridError('ERR_POLICY_OUTPUT', `policy ${quoted} returned what is not plain JSON: ${clean(text)}`);
      case 'I':
        throw new AigridError('ERR_POLICY_INVALID', `policy ${quoted} is invalid: ${clean(text)}`);
      default:
        throw new AigridError('ERR_POLICY_LIMIT', `policy ${quoted}: the sandbox gave no answer`);
    }
  }
}

/** Text from inside the sandbox is the policy's: control characters are escaped so a message stays one line. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
