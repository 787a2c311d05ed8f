/**
 * Lets jest write its `--json` report when a failing assertion holds a BigInt (`expected` and
 * `actual` of `toEqual` go into the report's failure details): `JSON.stringify` throws on a
 * BigInt, jest then writes no report at all, and CI counts the whole run as one failure with no
 * details. Called from the global setups, it gives BigInt a `toJSON` (`"12n"`) in jest's own
 * realm only: specs run in a vm context of their own, whose BigInt is untouched, so code under
 * test still finds `JSON.stringify(1n)` throwing, as in production.
 */
export function letJsonReportsHoldBigInts(): void {
  const proto = BigInt.prototype as { toJSON?: () => string };
  if (proto.toJSON) return;
  Object.defineProperty(proto, 'toJSON', {
    value(this: bigint) {
      return `${this.toString()}n`;
    },
    configurable: true,
    writable: true,
  });
}
