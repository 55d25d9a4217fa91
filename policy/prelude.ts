// The script each evaluation runs in its fresh QuickJS context before the policy. It captures
// what the runner needs before any policy code runs (so a policy that replaces JSON, Reflect or a
// prototype changes only what it sees itself), takes away what would make a policy
// nondeterministic or let it compile code at run time, and returns the runner the host calls.
//
// The runner answers one string: a kind letter, then its text.
//   J  success: the output as JSON (empty after a definition check)
//   I  the script defines no function eval
//   F  the policy threw (the text is the error, line included when known)
//   O  the output is not plain JSON
//   L  a limit inside the sandbox: memory, stack, string length, a scan over a huge array-like
//   S  the output's JSON is longer than allowed
export const PRELUDE = String.raw`(function () {
  'use strict';
  var g = globalThis;
  var apply = Reflect.apply;
  var defineProperty = Object.defineProperty;
  var getPrototypeOf = Object.getPrototypeOf;
  var ObjectCtor = Object;
  var isArray = Array.isArray;
  var parse = JSON.parse;
  var stringify = JSON.stringify;
  var imul = Math.imul;
  var floor = Math.floor;
  var StringCtor = String;
  var ErrorCtor = Error;
  var slice = String.prototype.slice;
  var exec = RegExp.prototype.exec;
  var POLICY_FRAME = /<input>:(\d+):/;
  var ObjectProto = Object.prototype;
  var ArrayProto = Array.prototype;
  var realEval = g.eval;

  class LimitError extends RangeError {}
  var LIMIT_MESSAGES = { 'out of memory': 1, 'stack overflow': 1, 'string too long': 1 };

  // Code compiled at run time escapes compile()'s checks, and its nesting can reach the host's
  // stack: eval and the four Function constructors refuse.
  function noCode() {
    throw new EvalError('policies cannot compile code at run time (eval, Function)');
  }
  function forbid(proto) {
    var ctor = function () { return noCode(); };
    defineProperty(ctor, 'prototype', { value: proto });
    defineProperty(proto, 'constructor', { value: ctor, writable: true, configurable: true });
    return ctor;
  }
  defineProperty(g, 'Function', { value: forbid(getPrototypeOf(function () {})), writable: true, configurable: true });
  forbid(getPrototypeOf(function* () {}));
  forbid(getPrototypeOf(async function () {}));
  forbid(getPrototypeOf(async function* () {}));
  // The policy's own function eval replaces this one; still this one afterwards means none was defined.
  function evalMissing() { return noCode(); }
  defineProperty(g, 'eval', { value: evalMissing, writable: true, configurable: true });

  // Math.random: mulberry32 seeded by the host from the call's inputs, so the same call draws the
  // same numbers and different calls different ones. (Date is not in the context at all.)
  var state = 0;
  function random() {
    state = (state + 0x6d2b79f5) | 0;
    var t = imul(state ^ (state >>> 15), 1 | state);
    t = (t + imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  defineProperty(Math, 'random', { value: random, writable: true, configurable: true });

  // These methods walk 0..length of any array-like inside one native call, holes included,
  // without allocating: on new Array(1e9) one call would hold the host's thread for half a
  // minute, out of the interrupt handler's reach. Longer than a dense array the heap could hold
  // is refused.
  var maxScan = 0;
  function lengthOf(value) {
    var n = +ObjectCtor(value).length;
    return n > 0 ? floor(n) : 0;
  }
  function guard(name) {
    var original = ArrayProto[name];
    var wrapped = {
      [name]() {
        var n = this === null || this === undefined ? 0 : lengthOf(this);
        if (name === 'concat') {
          for (var i = 0; i < arguments.length; i++) if (isArray(arguments[i])) n += lengthOf(arguments[i]);
        }
        if (n > maxScan) throw new LimitError(name + ' over ' + n + ' elements (at most ' + maxScan + ' in a policy)');
        return apply(original, this, arguments);
      },
    }[name];
    defineProperty(ArrayProto, name, { value: wrapped, writable: true, configurable: true });
  }
  var SCANS = ['concat', 'copyWithin', 'every', 'filter', 'find', 'findIndex', 'findLast', 'findLastIndex',
    'flat', 'flatMap', 'forEach', 'includes', 'indexOf', 'join', 'lastIndexOf', 'map', 'reduce',
    'reduceRight', 'reverse', 'shift', 'slice', 'some', 'sort', 'splice', 'toLocaleString', 'unshift'];
  for (var s = 0; s < SCANS.length; s++) guard(SCANS[s]);

  // Where in the policy's source: a SyntaxError carries lineNumber, other errors only a stack
  // whose frames in the policy read "(<input>:line:column)".
  function lineOf(e) {
    if (typeof e.lineNumber === 'number') return e.lineNumber;
    var frame = typeof e.stack === 'string' ? apply(exec, POLICY_FRAME, [e.stack]) : null;
    return frame ? frame[1] : undefined;
  }
  function describe(e) {
    if (e instanceof ErrorCtor) {
      var text = StringCtor(e.name) + ': ' + StringCtor(e.message);
      var line = lineOf(e);
      return line === undefined ? text : text + ' (line ' + line + ')';
    }
    return 'threw ' + (typeof e === 'string' ? stringify(e) : StringCtor(e));
  }
  function fail(kind, e) {
    var text;
    try {
      if (e instanceof LimitError || (e instanceof ErrorCtor && LIMIT_MESSAGES[e.message] === 1)) kind = 'L';
      text = describe(e);
    } catch (_) {
      text = 'threw a value that cannot be shown';
    }
    return kind + apply(slice, text, [0, 1024]);
  }

  function where(key) {
    return key === '' ? 'the output' : 'the value at key ' + stringify(key);
  }
  // JSON.stringify would drop functions and undefined, turn NaN into null and objects of classes
  // into {}: such output is refused instead, so the host gets what the policy meant or nothing.
  function plain(key, value) {
    // A host that copies the output with Object.assign would set a prototype from this key.
    if (key === '__proto__') throw new TypeError('the key "__proto__" is not allowed in the output');
    var type = typeof value;
    if (value === null || type === 'string' || type === 'boolean') return value;
    if (type === 'number') {
      if (value - value === 0) return value;
      throw new TypeError(where(key) + ' is ' + value + ', which JSON cannot hold');
    }
    if (type === 'object') {
      if (isArray(value)) return value;
      var proto = getPrototypeOf(value);
      if (proto === ObjectProto || proto === null) return value;
      throw new TypeError(where(key) + ' is an instance of a class (a Map, a Promise, ...), not a plain object');
    }
    throw new TypeError(where(key) + ' is ' + (type === 'undefined' ? 'undefined' : 'a ' + type) + ', which JSON cannot hold');
  }

  // parameters === undefined: only check that the script runs and defines eval.
  return function run(source, seed, scanLimit, maxOutput, parameters, input, context) {
    state = seed | 0;
    maxScan = scanLimit;
    var policy;
    try {
      (0, realEval)(source);
      policy = g.eval;
    } catch (e) {
      return fail('F', e);
    }
    if (typeof policy !== 'function' || policy === evalMissing) {
      return 'Ithe script defines no function eval(parameters, input, context)';
    }
    if (parameters === undefined) return 'J';
    var output;
    try {
      output = policy(parse(parameters), parse(input), parse(context));
    } catch (e) {
      return fail('F', e);
    }
    var text;
    try {
      text = stringify(output, plain);
    } catch (e) {
      return fail('O', e);
    }
    if (text.length > maxOutput) return 'Sthe output is ' + text.length + ' characters of JSON, more than the ' + maxOutput + ' allowed';
    return 'J' + text;
  };
})()`;
