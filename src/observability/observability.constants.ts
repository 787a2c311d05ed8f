/** Injection token of the `ObservabilityConfig`. */
export const OBSERVABILITY_CONFIG = 'OBSERVABILITY_CONFIG';
