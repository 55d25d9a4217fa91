import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const app = (file: string) => fileURLToPath(new URL(`./client/app/${file}`, import.meta.url));

/**
 * onnxruntime-web's WebAssembly runtime, the build that @huggingface/transformers was made with
 * (its own dependency), copied to dist/app/ort/: pages that run pipeline blocks load it from the
 * server that served /sdk.js, never from a CDN.
 */
/** The WebAssembly build (asyncify: what its wasm backend loads) and the WebGPU one (jsep). */
const ORT_FILES = ['asyncify', 'jsep'].flatMap((build) => [`ort-wasm-simd-threaded.${build}.mjs`, `ort-wasm-simd-threaded.${build}.wasm`]);

function onnxRuntimeFiles(): Plugin {
  // Neither package exports its package.json: find each by its entry, resolved as its importer would.
  const packageDir = (entry: string, name: string) => entry.slice(0, entry.lastIndexOf(`/node_modules/${name}/`) + `/node_modules/${name}`.length);
  const transformers = packageDir(createRequire(import.meta.url).resolve('@huggingface/transformers'), '@huggingface/transformers');
  const ort = packageDir(createRequire(join(transformers, 'package.json')).resolve('onnxruntime-web'), 'onnxruntime-web');
  return {
    name: 'onnxruntime-files',
    writeBundle(options) {
      const out = join(options.dir ?? resolve('dist/app'), 'ort');
      mkdirSync(out, { recursive: true });
      for (const file of ORT_FILES) copyFileSync(join(ort, 'dist', file), join(out, file));
    },
  };
}

// The web app lives in client/app and is built to dist/app, which the signaling server serves.
// Two entries: the page (index.html) and the SDK for pages as one ES module at /sdk.js, with its
// dependencies bundled, so a page can `import { connect } from '/sdk.js'` without a bundler.
export default defineConfig({
  root: 'client/app',
  base: './',
  // simple-peer's npm build reads Node's `global`; client/mesh/browser-globals.ts supplies
  // Buffer and process before it loads.
  define: { global: 'globalThis' },
  plugins: [onnxRuntimeFiles()],
  build: {
    outDir: '../../dist/app',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // The page bundles the tokenizer library (@huggingface/transformers), a few MB by itself.
    chunkSizeWarningLimit: 4096,
    rolldownOptions: {
      input: { index: app('index.html'), sdk: app('sdk.ts') },
      // Keeps the SDK entry's exports (an app build drops entry exports by default).
      preserveEntrySignatures: 'exports-only',
      output: { entryFileNames: (chunk) => (chunk.name === 'sdk' ? 'sdk.js' : 'assets/[name]-[hash].js') },
    },
  },
});
