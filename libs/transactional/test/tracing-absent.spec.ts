/* eslint-disable @typescript-eslint/no-require-imports -- modules loaded in isolation */
describe('when @opentelemetry/api is not installed', () => {
  it('should start no span, and run the work as it is', () => {
    jest.isolateModules(() => {
      // NOTE: the optional peer made unresolvable, as in an application that does not have it.
      jest.doMock('@opentelemetry/api', () => {
        throw new Error("Cannot find module '@opentelemetry/api'");
      });
      const tracing =
        require('../src/observability/tracing') as typeof import('../src/observability/tracing');
      expect(tracing.otelApi()).toBeNull();
      expect(tracing.startSpan('transaction', 'internal', {})).toBeUndefined();
      expect(tracing.withSpan(undefined, () => 42)).toBe(42);
      expect(() =>
        tracing.endSpan(
          undefined,
          'transaction.outcome',
          'commit',
          new Error('x'),
        ),
      ).not.toThrow();
    });
    jest.dontMock('@opentelemetry/api');
  });

  it('should load the API when it is installed, and make no span while no SDK is registered', () => {
    jest.isolateModules(() => {
      const tracing =
        require('../src/observability/tracing') as typeof import('../src/observability/tracing');
      expect(tracing.otelApi()).not.toBeNull();
      expect(tracing.startSpan('transaction', 'internal', {})).toBeUndefined();
    });
  });
});
