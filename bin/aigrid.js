#!/usr/bin/env node
// The aigrid command. TypeScript sources run through tsx, so there is no separate build step.
import './register.js';

const USAGE = `Usage: aigrid <command> [options]

Commands:
  signal   run the signaling server and serve the web app (npm start)
  peer     join a network as a Node edge peer

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
  } else {
    process.stdout.write(USAGE);
    if (command && command !== '--help' && command !== '-h') {
      process.stderr.write(`unknown command "${command}"\n`);
      process.exitCode = 2;
    }
  }
} catch (err) {
  process.stderr.write(`aigrid ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
