import { execFileSync } from 'child_process';
import { mkdirSync, rmSync } from 'fs';
import { resolve } from 'path';
import globalSetup from '../global-setup';
import { letJsonReportsHoldBigInts } from '../support/json-report-bigint';

const ROOT = resolve(__dirname, '../..');

/**
 * The e2e global setup, then one build of the service for every fault spec to start as child
 * processes: compiled JavaScript starts several times faster than ts-node, and the crash
 * specs restart the service often. The build goes to a directory of its own (under
 * node_modules, so that the service finds its packages), never to `dist/`.
 */
export default async function faultsGlobalSetup(): Promise<void> {
  letJsonReportsHoldBigInts();
  await globalSetup();
  // A build given from outside (FAULT_APP_BUILD) is used as it is, and kept.
  if (process.env.FAULT_APP_BUILD) return;
  const outDir = resolve(
    ROOT,
    'node_modules/.cache/webhooks-faults',
    String(process.pid),
  );
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const tsc = resolve(ROOT, 'node_modules/typescript/bin/tsc');
  // NOTE: type-checking is lint's job (npx tsc --noEmit); here only the emit is needed.
  execFileSync(
    process.execPath,
    [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir, '--noCheck'],
    { cwd: ROOT, stdio: 'inherit' },
  );
  process.env.FAULT_APP_BUILD = outDir;
  process.env.FAULT_APP_BUILD_OWNED = '1';
}
