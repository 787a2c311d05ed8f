/* eslint-disable @typescript-eslint/no-require-imports */
import { TransactionalError } from '../errors/transactional.error';

const cache = new Map<string, unknown>();

/**
 * The optional peer `name` (`bull`, `bullmq`, `@nestjs/bull`, `@nestjs/bullmq`), or `undefined`
 * when the application did not install it. Internal.
 */
export function optionalPeer<T = any>(name: string): T | undefined {
  if (!cache.has(name)) {
    let loaded: unknown;
    try {
      loaded = require(name);
    } catch (error) {
      if ((error as { code?: string }).code !== 'MODULE_NOT_FOUND') throw error;
    }
    cache.set(name, loaded);
  }
  return cache.get(name) as T | undefined;
}

/** The majors of `bullmq` the library supports (its package declares no npm peer range for it). */
export const SUPPORTED_BULLMQ_MAJORS = [5, 6] as const;

/**
 * Throws a `TransactionalError` unless `version` (of the installed `bullmq`) has a supported
 * major. `bullmq` is an optional peer listed only in `peerDependenciesMeta` (see the package
 * README, "Install"), so npm does not check its version: this does, when a BullMQ queue is
 * wrapped. An unreadable version passes. Internal.
 */
export function assertSupportedBullMQ(version: string | undefined): void {
  if (version === undefined) return;
  const major = Number(/^(\d+)\./.exec(version)?.[1]);
  if ((SUPPORTED_BULLMQ_MAJORS as readonly number[]).includes(major)) return;
  throw new TransactionalError(
    `nestjs-transactional-jobs supports bullmq ${SUPPORTED_BULLMQ_MAJORS.join(' and ')}, ` +
      `but bullmq ${version} is installed. Install a supported major ` +
      `(npm install bullmq@${SUPPORTED_BULLMQ_MAJORS[SUPPORTED_BULLMQ_MAJORS.length - 1]}).`,
  );
}
