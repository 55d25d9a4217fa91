// Checkpoint loading for pages and Node alike. Node-only pieces (local folders, the disk cache)
// live in ./node.ts so that browser bundles never pull in node:fs.
export * from './safetensors.ts';
export * from './source.ts';
export { HttpSource, parseContentRange, type HttpSourceOptions } from './http-source.ts';
export * from './range-cache.ts';
export { planReads, DEFAULT_MAX_READ_BYTES, type PlannedRead } from './plan.ts';
export * from './convert.ts';
export * from './layers.ts';
export * from './reader.ts';
export * from './opener.ts';
