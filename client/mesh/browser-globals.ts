// simple-peer's npm build expects Node's Buffer and process. In a browser bundle we provide them
// from the npm 'buffer' and 'process' packages; in Node the real ones exist and are left alone.
// This module must be imported before simple-peer (peer-link.ts does so).
import { Buffer } from 'buffer';
import processShim from 'process/browser.js';

const g = globalThis as { Buffer?: unknown; process?: unknown };
if (typeof g.Buffer === 'undefined') g.Buffer = Buffer;
if (typeof g.process === 'undefined') g.process = processShim;
