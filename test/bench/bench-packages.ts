// npm packages the benchmarks compare against but the project does not depend on: each is installed
// on first use into its own folder under test/.fixtures/bench/ (scripts off, so nothing is
// downloaded or built beyond the npm packages), leaving the project's node_modules and lockfile alone.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The version of `name` installed under `dir`'s node_modules, if any. */
export function installedVersion(dir: string, name: string): string | undefined {
  const pkg = join(dir, 'node_modules', ...name.split('/'), 'package.json');
  return existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version : undefined;
}

export interface BenchPackage {
  name: string;
  version: string;
  /** The folder it is installed into (its own node_modules). */
  prefix: string;
  /** Use the project's own copy when it has this very version (default false). */
  preferProject?: boolean;
  /** Further `npm install` arguments (flags or other package specs), before the package itself. */
  extraArgs?: string[];
}

/**
 * The folder whose node_modules holds `pkg.name` at `pkg.version`: the project's root (when
 * `preferProject` and it has that version) or `pkg.prefix`, installed there on first use.
 */
export function installOnFirstUse(pkg: BenchPackage, log: (line: string) => void): string {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  if (pkg.preferProject && installedVersion(root, pkg.name) === pkg.version) return root;
  if (installedVersion(pkg.prefix, pkg.name) === pkg.version) return pkg.prefix;
  const args = ['install', '--prefix', pkg.prefix, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', ...(pkg.extraArgs ?? []), `${pkg.name}@${pkg.version}`];
  log(`installing ${pkg.name} ${pkg.version} into ${pkg.prefix} (npm ${args.join(' ')}) ...`);
  const npm = spawnSync('npm', args, { stdio: 'inherit', shell: process.platform === 'win32' });
  if (npm.status !== 0 || installedVersion(pkg.prefix, pkg.name) !== pkg.version) {
    throw new Error(`could not install ${pkg.name} ${pkg.version} into ${pkg.prefix}; install it by hand: npm install --prefix ${pkg.prefix} --no-save ${pkg.name}@${pkg.version}`);
  }
  return pkg.prefix;
}
