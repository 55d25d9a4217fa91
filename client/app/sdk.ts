// The SDK for pages, built to /sdk.js next to the web app: `import { connect } from '/sdk.js'`.
export * from '../sdk/index.ts';
