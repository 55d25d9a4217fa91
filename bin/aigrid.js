#!/usr/bin/env node
// The aigrid command. TypeScript sources run through tsx, so there is no separate build step.
import './register.js';

const USAGE = `Usage: aigrid <command> [options]

Commands:
  start    signaling server, web app, OpenAI gateway and a peer serving a default model (npm start)
  signal   run the signaling server and serve the web app
  peer     join a network as a Node edge peer
  serve    make a model available on a network and serve it from this process
  gateway  an OpenAI-compatible HTTP API over a network
  id       print the peer id of an identity key (to name a network's owner, or who may serve)

Run "aigrid <command> --help" for a command's options.
`;

const [command, ...args] = process.argv.slice(2);
try {
  if (command === 'signal') {
    const { runSignalCommand } = await import('../signaling/main.ts');
    await runSignalCommand(args);
  } else if (command === 'peer') {
    const { runPeerCommand } = await import('../client/cli/peer.ts');
    await runPeerCommand(args);
  } else if (command === 'serve') {
    const { runServeCommand } = await import('../client/cli/serve.ts');
    await runServeCommand(args);
  } else if (command === 'gateway') {
    const { runGatewayCommand } = await import('../client/cli/gateway.ts');
    await runGatewayCommand(args);
  } else if (command === 'id') {
    const { runIdCommand } = await import('../client/cli/id.ts');
    await runIdCommand(args);
  } else if (command === 'start') {
    const { runStartCommand } = await import('../client/cli/start.ts');
    await runStartCommand(args);
  } else {
    process.stdout.write(USAGE);
    if (command && command !== '--help' && command !== '-h') {
      process.stderr.write(`unknown command "${command}"\n`);
      process.exitCode = 2;
    }
  }
} catch (err) {
  const code = typeof err?.code === 'string' && err.code.startsWith('ERR_') ? `${err.code}: ` : '';
  process.stderr.write(`aigrid ${command}: ${code}${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
