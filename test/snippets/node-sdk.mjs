// Call the grid from Node (or, with a bundler, from a page): the package's SDK.
// Run: node node-sdk.mjs ws://127.0.0.1:8787/signal default
import { connect } from 'aigrid';

const grid = await connect({ signal: process.argv[2] ?? 'ws://127.0.0.1:8787/signal', network: process.argv[3] ?? 'default' });
const { data: models } = await grid.models.list(); // each with its layer coverage and health
const stream = await grid.chat.completions.create({
  model: models[0].id,
  messages: [{ role: 'user', content: 'Hello!' }],
  max_tokens: 16,
  temperature: 0,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
process.stdout.write('\n');
grid.close();
