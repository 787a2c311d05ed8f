/**
 * Name of the OpenTelemetry tracer the library's spans come from (`transaction`, and
 * `<queue> enqueue` for each batch of deferred jobs). The spans are made only when the
 * application has `@opentelemetry/api` installed (an optional peer dependency) and an SDK
 * registered; otherwise nothing is recorded.
 */
export const TRACER_NAME = 'nestjs-transactional-jobs';
