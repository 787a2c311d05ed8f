import { rmSync } from 'fs';

/** Removes the build of the fault global setup. */
export default async function faultsGlobalTeardown(): Promise<void> {
  const outDir = process.env.FAULT_APP_BUILD;
  if (outDir && process.env.FAULT_APP_BUILD_OWNED)
    rmSync(outDir, { recursive: true, force: true });
}
