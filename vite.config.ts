import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const app = (file: string) => fileURLToPath(new URL(`./client/app/${file}`, import.meta.url));

// The web app lives in client/app and is built to dist/app, which the signaling server serves.
// Two entries: the page (index.html) and the SDK for pages as one ES module at /sdk.js, with its
// dependencies bundled, so a page can `import { connect } from '/sdk.js'` without a bundler.
export default defineConfig({
  root: 'client/app',
  base: './',
  // simple-peer's npm build reads Node's `global`; client/mesh/browser-globals.ts supplies
  // Buffer and process before it loads.
  define: { global: 'globalThis' },
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
