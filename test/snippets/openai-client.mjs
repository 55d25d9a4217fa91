// Any OpenAI client works with the grid: point its base URL at the gateway.
// Run: node openai-client.mjs http://127.0.0.1:8787/v1
import OpenAI from 'openai';

const openai = new OpenAI({
  baseURL: process.argv[2] ?? process.env.AIGRID_BASE_URL ?? 'http://127.0.0.1:8787/v1',
  apiKey: process.env.AIGRID_API_KEY ?? 'none', // checked only by a gateway started with --api-key
});

const { data: models } = await openai.models.list();
console.error(`models: ${models.map((m) => `${m.id} (${m.health})`).join(', ')}`);

const stream = await openai.chat.completions.create({
  model: models[0].id,
  messages: [{ role: 'user', content: 'Tell me a story about a brave fox.' }],
  max_tokens: 48,
  temperature: 0,
  stream: true,
});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
process.stdout.write('\n');
