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

// Process-level safety for every command. A promise rejected with no handler is one request's or
// one connection's failure (a reply to a closed socket, a timer after a close): it is logged with
// the command and the stack, and the process keeps serving everyone else, since Node's default
// would end a signaling server, a gateway or a peer (and every peer and request on it) for it.
// An uncaught exception is logged the same way and the long-running commands also keep going: our
// handlers keep their state per connection or per request, so one that threw leaves the others
// whole, and a process that stays up serves everyone else. What is not safe is a process stuck
// in a loop of failures, so more than MAX_UNCAUGHT in a minute ends it (exit code 70) for its
// supervisor to restart; the short commands (id, help) have nothing to keep up and end at once.
const LONG_RUNNING = new Set(['signal', 'peer', 'serve', 'gateway', 'start']);
const MAX_UNCAUGHT = 10;
const uncaughtAt = [];
const report = (what, err) => {
  const detail = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  process.stderr.write(`${new Date().toISOString()} aigrid ${command ?? ''}: ${what}: ${detail}\n`);
};
process.on('unhandledRejection', (reason) => report('unhandled rejection (the process keeps running)', reason));
process.on('uncaughtException', (err) => {
  const now = Date.now();
  uncaughtAt.push(now);
  while (uncaughtAt[0] < now - 60_000) uncaughtAt.shift();
  if (!LONG_RUNNING.has(command) || uncaughtAt.length > MAX_UNCAUGHT) {
    report(`uncaught exception (${uncaughtAt.length} in the last minute; exiting)`, err);
    process.exit(70);
  }
  report('uncaught exception (the process keeps running)', err);
});

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
