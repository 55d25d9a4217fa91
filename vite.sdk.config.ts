import { builtinModules } from 'node:module';
import { readFileSync } from 'node:fs';
import { defineConfig } from 'vite';

// The SDK as an ES module library (dist/sdk): index.js for pages and bundlers, node.js for Node.
// Dependencies stay imports (the app or Node resolves them); WGSL sources are inlined as text.
const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
const external = [...Object.keys(pkg.dependencies), ...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default defineConfig({
  define: { global: 'globalThis' },
  build: {
    outDir: 'dist/sdk',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    minify: false,
    lib: { entry: { index: 'client/sdk/index.ts', node: 'client/sdk/node.ts' }, formats: ['es'] },
    rolldownOptions: { external: (id) => external.some((e) => id === e || id.startsWith(`${e}/`)) },
  },
});
