import { ClsServiceManager } from 'nestjs-cls';
import { TRANSACTION_SCOPES_KEY } from './transactional.constants';
import type { TransactionScope } from './transaction-context';

type Scopes = Readonly<Record<string, TransactionScope | undefined>>;
type Store = Record<string | symbol, any> & {
  [TRANSACTION_SCOPES_KEY]?: Scopes;
};

// NOTE: nestjs-cls keeps one AsyncLocalStorage for the process; ClsServiceManager exposes the
// same ClsService that Nest injects, so decorated provider methods need no DI to reach it.
const cls = ClsServiceManager.getClsService();

const CLAIM_KEY = Symbol.for('transactional:claimed-handler');
/** Key under which a scoped store answers with the store it writes through to. */
const SHARED_STORE = Symbol.for('transactional:shared-store');

/**
 * A CLS store for a transaction scope in which only the library's own slots (the transaction
 * scopes and the handler claim) are local; every other key is read from and written to the
 * store the scope was entered from. So `cls.set()` inside a `@Transactional` method is still
 * visible after it returns, as it is with nestjs-cls alone.
 */
function scopedStore(parent: Store, scopes: Scopes): Store {
  const shared: Store = parent[SHARED_STORE] ?? parent;
  const local: Store = {
    [TRANSACTION_SCOPES_KEY]: scopes,
    [CLAIM_KEY]: undefined,
  };
  return new Proxy(local, {
    get: (target, key) =>
      key === TRANSACTION_SCOPES_KEY || key === CLAIM_KEY
        ? target[key]
        : key === SHARED_STORE
          ? shared
          : shared[key],
    set: (target, key, value) => {
      if (key === TRANSACTION_SCOPES_KEY || key === CLAIM_KEY)
        target[key] = value;
      else shared[key] = value;
      return true;
    },
    has: (target, key) => key in target || key in shared,
    deleteProperty: (target, key) =>
      key === TRANSACTION_SCOPES_KEY || key === CLAIM_KEY
        ? delete target[key]
        : delete shared[key],
    ownKeys: (target) => [
      ...new Set([...Reflect.ownKeys(shared), ...Reflect.ownKeys(target)]),
    ],
    getOwnPropertyDescriptor: (target, key) => {
      if (key === TRANSACTION_SCOPES_KEY || key === CLAIM_KEY)
        return Reflect.getOwnPropertyDescriptor(target, key);
      const descriptor = Reflect.getOwnPropertyDescriptor(shared, key);
      // NOTE: a proxy may only report configurable properties its target does not have.
      return descriptor && { ...descriptor, configurable: true };
    },
  });
}

function storeWith(parent: Store | undefined, scopes: Scopes): Store {
  return parent
    ? scopedStore(parent, scopes)
    : { [TRANSACTION_SCOPES_KEY]: scopes };
}

/** Reads and binds transaction scopes in the CLS store. Internal to the library. */
export const transactionStorage = {
  /** The scope bound for `connectionName` in the current async context, if any. */
  get(connectionName: string): TransactionScope | undefined {
    const store = cls.get() as Store | undefined;
    return store?.[TRANSACTION_SCOPES_KEY]?.[connectionName];
  },

  /**
   * The scope bound for `connectionName` if it is still open; `undefined` when none is bound
   * (or, given `owner`, when the bound one's transaction belongs to another runner: another
   * application in the same process). A scope that has ended throws `TransactionClosedError`
   * naming `what`.
   */
  open(
    connectionName: string,
    what: string,
    owner?: object,
  ): TransactionScope | undefined {
    const scope = this.get(connectionName);
    // NOTE: with `owner`, a transaction another application's runner opened is none of ours.
    if (!scope || (owner !== undefined && scope.tx.owner !== owner))
      return undefined;
    scope.tx.target(scope.frame, what);
    return scope;
  },

  /** The open transaction scopes of the current async context, of every connection. */
  openScopes(): TransactionScope[] {
    const scopes = (cls.get() as Store | undefined)?.[TRANSACTION_SCOPES_KEY];
    const open: TransactionScope[] = [];
    if (!scopes) return open;
    for (const name in scopes) {
      const scope = scopes[name];
      if (scope && !scope.frame.closed) open.push(scope);
    }
    return open;
  },

  /** Whether any connection has an open transaction scope in the current async context. */
  hasAny(): boolean {
    const scopes = (cls.get() as Store | undefined)?.[TRANSACTION_SCOPES_KEY];
    if (!scopes) return false;
    for (const name in scopes) {
      const scope = scopes[name];
      if (scope && !scope.frame.closed) return true;
    }
    return false;
  },

  /**
   * Runs `fn` in a new CLS context with `scope` bound for `connectionName` (`undefined` unbinds
   * it: a suspended transaction); other CLS values are shared with the current context.
   */
  run<T>(
    connectionName: string,
    scope: TransactionScope | undefined,
    fn: () => T,
  ): T {
    const parent = cls.get() as Store | undefined;
    const scopes = parent?.[TRANSACTION_SCOPES_KEY];
    return cls.runWith(
      storeWith(
        parent,
        scopes
          ? { ...scopes, [connectionName]: scope }
          : { [connectionName]: scope },
      ),
      fn,
    );
  },

  /** Runs `fn` with no transaction bound on any connection (after-commit work). */
  runDetached<T>(fn: () => T): T {
    const parent = cls.get() as Store | undefined;
    if (!parent?.[TRANSACTION_SCOPES_KEY]) return fn();
    return cls.runWith(scopedStore(parent, {}), fn);
  },
};

/**
 * Hand-over between the interceptor and the method wrapper of one route handler: the
 * interceptor has opened the scope the wrapper would open again (REQUIRES_NEW, NESTED).
 */
export const handlerClaims = {
  /** Marks `handler` as already wrapped in the current (freshly entered) context. */
  claim(handler: object): void {
    const store = cls.get() as Store | undefined;
    if (store) store[CLAIM_KEY] = handler;
  },

  /** Whether the current context claimed `handler`; the claim is consumed. */
  take(handler: object): boolean {
    const store = cls.get() as Store | undefined;
    if (store?.[CLAIM_KEY] !== handler) return false;
    store[CLAIM_KEY] = undefined;
    return true;
  },
};
