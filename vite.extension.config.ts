import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { build, defineConfig, type InlineConfig, type Plugin } from 'vite';

// The browser extension (dist/extension, loadable unpacked): its pages (popup, options, the
// permission prompt, the engine's offscreen document) and the service worker as ES modules that
// share chunks, then each content script as one classic script (content scripts cannot import).
const root = resolve(import.meta.dirname, 'extension');
const outDir = resolve(import.meta.dirname, 'dist/extension');
const { version } = JSON.parse(readFileSync(resolve(import.meta.dirname, 'package.json'), 'utf8')) as { version: string };
// simple-peer's npm build reads Node's `global` (see vite.config.ts).
const define = { global: 'globalThis', __AIGRID_VERSION__: JSON.stringify(version) };

const CONTENT_SCRIPTS = { bridge: 'src/page/bridge.ts', provider: 'src/page/provider.ts' };

function extensionFiles(): Plugin {
  return {
    name: 'aigrid-extension-files',
    generateBundle(_options, bundle) {
      // The engine uses @huggingface/transformers for tokenizers only; ONNX Runtime's wasm binary
      // (26 MB), which only model inference would fetch, is left out.
      for (const file of Object.keys(bundle)) if (/ort-wasm[^/]*\.wasm$/.test(file)) delete bundle[file];
      const manifest = JSON.parse(readFileSync(resolve(root, 'manifest.json'), 'utf8')) as Record<string, unknown>;
      this.emitFile({ type: 'asset', fileName: 'manifest.json', source: `${JSON.stringify({ ...manifest, version }, null, 2)}\n` });
    },
    async closeBundle() {
      for (const [name, entry] of Object.entries(CONTENT_SCRIPTS)) {
        const config: InlineConfig = {
          configFile: false,
          root,
          logLevel: 'warn',
          define,
          publicDir: false,
          build: {
            outDir,
            emptyOutDir: false,
            target: 'es2022',
            minify: true,
            lib: { entry: resolve(root, entry), formats: ['iife'], name: `aigrid_${name}`, fileName: () => `${name}.js` },
          },
        };
        await build(config);
      }
    },
  };
}

export default defineConfig({
  root,
  base: './',
  define,
  publicDir: false,
  plugins: [extensionFiles()],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    // The tokenizer library (transformers.js without ONNX Runtime's wasm) is one ~580 kB chunk.
    chunkSizeWarningLimit: 1024,
    rolldownOptions: {
      input: {
        popup: resolve(root, 'popup.html'),
        options: resolve(root, 'options.html'),
        permission: resolve(root, 'permission.html'),
        offscreen: resolve(root, 'offscreen.html'),
        background: resolve(root, 'src/background.ts'),
      },
      output: {
        entryFileNames: '[name].js',
        chunkFileNames: 'chunks/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
});
