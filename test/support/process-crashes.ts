import {
  nextMacrotask,
  ProcessFailures,
  watchProcessFailures,
} from '../../libs/transactional/test/support/process-failures';

/**
 * Fails every test of the calling `describe` (or file) after which the process saw an unhandled
 * rejection or an uncaught exception (from the test or from the apps it runs, in the test or
 * between tests). Listens on the real Node process: the `process` global of a Jest test file is
 * a copy with its own listeners, which Node never emits on, so `process.on('unhandledRejection')`
 * in a spec sees nothing.
 */
export function failOnProcessCrashes(): void {
  let watch: ProcessFailures | undefined;
  beforeAll(() => {
    watch = watchProcessFailures();
  });
  afterEach(async () => {
    await nextMacrotask();
    const seen = [
      ...(watch?.unhandledRejections.splice(0) ?? []),
      ...(watch?.uncaughtExceptions.splice(0) ?? []),
    ];
    expect(seen.map(String)).toEqual([]);
  });
  afterAll(() => watch?.dispose());
}
