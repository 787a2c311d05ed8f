import type {
  HealthCheckResult,
  HealthIndicatorResult,
} from '@nestjs/terminus';

function statuses(
  part: Partial<HealthIndicatorResult> | undefined,
): HealthIndicatorResult | undefined {
  if (!part) return undefined;
  const out: HealthIndicatorResult = {};
  for (const [key, value] of Object.entries(part)) {
    if (value) out[key] = { status: value.status };
  }
  return out;
}

/**
 * What an anonymous caller may see of a health check: the overall status and each check's
 * up/down, without messages (addresses, ports, credentials in a URL) or counts.
 */
export function redactHealth(result: HealthCheckResult): HealthCheckResult {
  return {
    status: result.status,
    info: statuses(result.info),
    error: statuses(result.error),
    details: statuses(result.details) ?? {},
  };
}
