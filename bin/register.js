// Lets Node run the TypeScript sources: tsx for .ts, and WGSL files imported as text.
// Use as `node --import ./bin/register.js file.ts`; bin/aigrid.js imports it first.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register('./wgsl-hooks.js', import.meta.url);
