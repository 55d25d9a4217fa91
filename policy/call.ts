// What crosses the sandbox's boundary, on the host's side: the arguments as JSON text (checked
// for size, and hashed into the call's Math.random seed), and the output parsed back from JSON.
import { AigridError, errorMessage } from '../protocol/errors.ts';
import type { Call } from './evaluate.ts';
import type { PolicyLimits } from './limits.ts';

export function encodeCall(parameters: unknown, input: unknown, context: unknown, limits: PolicyLimits, name: string): Call {
  const call = { parameters: encode(parameters, 'parameters'), input: encode(input, 'input'), context: encode(context, 'context'), seed: 0 };
  const length = call.parameters.length + call.input.length + call.context.length;
  if (length > limits.maxInputLength) {
    throw new AigridError('ERR_POLICY_LIMIT', `policy ${JSON.stringify(name)}: its arguments are ${length} characters of JSON, more than the ${limits.maxInputLength} allowed`);
  }
  call.seed = seedOf(call.parameters, call.input, call.context);
  return call;
}

function encode(value: unknown, what: string): string {
  try {
    // undefined (or a function) has no JSON: the policy gets null.
    return JSON.stringify(value) ?? 'null';
  } catch (err) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `policy ${what}: not JSON (${errorMessage(err)})`);
  }
}

/** FNV-1a over the three texts: the same call gets the same random numbers, another call others. */
function seedOf(...texts: string[]): number {
  let hash = 0x811c9dc5;
  for (const text of texts) {
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
    hash = Math.imul(hash ^ 0xff, 0x01000193); // separator: ("ab", "c") and ("a", "bc") differ
  }
  return hash | 0;
}

/** The output's JSON text, checked again on this side of the boundary. */
export function decodeOutput(text: string, limits: PolicyLimits, name: string): unknown {
  if (text.length > limits.maxOutputLength) {
    throw new AigridError('ERR_POLICY_LIMIT', `policy ${JSON.stringify(name)}: the output is ${text.length} characters of JSON, more than the ${limits.maxOutputLength} allowed`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AigridError('ERR_POLICY_OUTPUT', `policy ${JSON.stringify(name)}: the output is not JSON (${errorMessage(err)})`);
  }
}
