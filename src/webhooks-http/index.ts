/** Framework-free building blocks for outbound webhook delivery (SSRF guard, sender, signer, retries). */
export * from './capped-body';
export * from './guarded-lookup';
export * from './ip-address';
export * from './retry-schedule';
export * from './send-result';
export * from './ssrf-guard';
export * from './ssrf-ranges';
export * from './standard-webhooks-signer';
export * from './webhook-sender';
export * from './webhook-url-validator';
