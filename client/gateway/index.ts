// The OpenAI-compatible gateway: a grid client that answers OpenAI's HTTP API.
export { createGatewayHandler, type GatewayGrid, type GatewayHandler, type GatewayOptions } from './handler.ts';
export { startGateway, type Gateway, type StartGatewayOptions } from './server.ts';
export type { OpenAIErrorBody } from './errors.ts';
