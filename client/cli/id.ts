// `aigrid id`: prints the peer id of a key file (making the key when missing), e.g. to name a
// network's owner with `aigrid signal --owner` or to list who may serve.
import { parseArgs } from 'node:util';
import { defaultIdentityFile } from '../mesh/identity-file.ts';
import { identityOption } from './options.ts';

const USAGE = `Usage: aigrid id [ROLE] [--identity FILE]

Prints the peer id of the identity key a command uses: ROLE is peer (default), serve, start,
gateway, serve-peer, start-peer or owner (the networks' owner under aigrid start), kept in
AIGRID_STATE_DIR (default ~/.local/state/aigrid); or the key file FILE. The key is made when
missing.
`;

export async function runIdCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { identity: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals.length > 1) {
    process.stdout.write(USAGE);
    if (!values.help) throw new Error('give at most one ROLE (see --help)');
    return;
  }
  const role = positionals[0] ?? 'peer';
  if (!/^[a-z-]{1,32}$/.test(role)) throw new Error(`ROLE must be a word like peer or serve, not ${JSON.stringify(role.slice(0, 40))}`);
  const identity = await identityOption(values.identity, role);
  process.stdout.write(`${identity.peerId}  ${values.identity ?? defaultIdentityFile(role)}\n`);
}
