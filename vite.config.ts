import { defineConfig } from 'vite';

// The web app lives in client/app and is built to dist/app, which the signaling server serves.
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
  },
});
