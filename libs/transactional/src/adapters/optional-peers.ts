/* eslint-disable @typescript-eslint/no-require-imports */

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
