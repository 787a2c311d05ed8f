import { TransactionalError } from '../errors/transactional.error';

// NOTE: properties that `await`, Jest's matchers and pretty-printer and Node's inspect probe
// on any value; answering them with `undefined` keeps a stand-in printable and awaitable.
const PROBED = new Set<string>([
  'then',
  'toJSON',
  'asymmetricMatch',
  'nodeType',
  'constructor',
  'inspect',
]);

/**
 * Wraps `target` so that reading any property it lacks throws a `TransactionalError` with the
 * message `explain(property)`, instead of a bare "is not a function". Internal to the kit.
 */
export function unavailable<T>(
  target: object,
  explain: (property: string) => string,
): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      if (property in object) return Reflect.get(object, property, receiver);
      if (
        typeof property === 'symbol' ||
        PROBED.has(property) ||
        property.startsWith('@@') ||
        property.startsWith('$$') ||
        property.startsWith('_')
      ) {
        return undefined;
      }
      throw new TransactionalError(explain(property));
    },
  }) as T;
}
