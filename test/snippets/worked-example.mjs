// Blocks, a policy and a vDAG on the network `npm start` runs: an LLM writes, a policy shouts its
// text, an embedding block turns the text into a vector; run from the SDK, then over HTTP.
// Run after npm start: node worked-example.mjs (AIGRID_URL, AIGRID_NETWORK, AIGRID_OWNER_KEY and
// AIGRID_API_KEY point it elsewhere).
import { connect, defaultIdentityFile, loadIdentityFile } from 'aigrid';

const base = process.env.AIGRID_URL ?? 'http://127.0.0.1:8787';
const grid = await connect({
  signal: `${base.replace(/^http/, 'ws')}/signal`,
  network: process.env.AIGRID_NETWORK ?? 'default',
  // The key `aigrid start` names as its networks' owner: only the owner sets policies.
  identity: await loadIdentityFile(process.env.AIGRID_OWNER_KEY ?? defaultIdentityFile('owner')),
});

// Create a record, or update the one an earlier run made.
async function put(registry, spec) {
  try {
    return await registry.create(spec);
  } catch (err) {
    if (!err.code?.endsWith('_EXISTS')) throw err;
    return registry.update(spec);
  }
}

// Wait until a model has a replica ready (peers load a new block in a few seconds).
async function ready(id) {
  for (let i = 0; i < 240; i++) {
    const model = (await grid.models.list()).data.find((m) => m.id === id);
    if (model?.health === 'ready' || model?.health === 'under-replicated') return model;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${id} has no replica ready after two minutes`);
}

// 1. Blocks: the LLM `npm start` serves, and a whole-model embedding pipeline from its files.
const llm = (await grid.models.list()).data.find((m) => !m.spec.pipeline);
if (!llm) throw new Error('the network serves no LLM: run npm start first');
await ready(llm.id);
const text = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
await put(grid.blocks, { uri: 'llm.demo:1', model: { kind: 'llm', modelId: llm.id }, tags: ['task=chat'], inputSchema: text, outputSchema: text });
await put(grid.blocks, {
  uri: 'embedding.demo:1',
  model: { kind: 'pipeline', task: 'feature-extraction', model: `${base}/models/bert-embed`, memoryMB: 64 },
  tags: ['task=embedding'],
  inputSchema: text,
  outputSchema: { type: 'object', properties: { embedding: { type: 'array', items: { type: 'number' } } } },
});
await ready('block/embedding.demo/1'); // the id a pipeline block is served under

// 2. A policy: post-processing that rewrites a node's output, run in the sandbox.
await put(grid.policies, { id: 'shout', hook: 'vdag', code: 'function eval(p, output) { return { text: output.text.toUpperCase() }; }' });

// 3. A vDAG: the LLM's text, shouted, into the embedding block.
await put(grid.vdags, {
  id: 'story-vector',
  nodes: [{ id: 'story', block: 'llm.demo:1', postprocess: 'shout' }, { id: 'vector', block: 'embedding.demo:1' }],
  connections: [{ from: 'story', to: 'vector' }],
  input: 'story',
  output: 'vector',
});

// Run it from the SDK: the LLM node's tokens stream as they come (greedy by default).
const input = { text: 'Once upon a time', maxTokens: 16 };
process.stdout.write('streamed: ');
const run = await grid.vdags.run('story-vector', input, { onEvent: (e) => e.type === 'token' && process.stdout.write(e.text) });
console.log(`\nsdk outputs: ${JSON.stringify(run.outputs)}`);
console.log(`vector of ${run.output.embedding.length} numbers`);

// The same run over HTTP, through the gateway.
const res = await fetch(`${base}/v1/vdags/story-vector/run`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${process.env.AIGRID_API_KEY ?? 'none'}` },
  body: JSON.stringify({ input }),
});
if (!res.ok) throw new Error(`POST /v1/vdags/story-vector/run: ${res.status} ${await res.text()}`);
console.log(`http outputs: ${JSON.stringify((await res.json()).outputs)}`);
grid.close();
