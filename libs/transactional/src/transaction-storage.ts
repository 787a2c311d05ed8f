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

/** Reads and binds transaction scopes in the CLS store. Internal to the library. */
export const transactionStorage = {
  /** The scope bound for `connectionName` in the current async context, if any. */
  get(connectionName: string): TransactionScope | undefined {
    const store = cls.get() as Store | undefined;
    return store?.[TRANSACTION_SCOPES_KEY]?.[connectionName];
  },

  /** Whether any connection has a transaction bound in the current async context. */
  hasAny(): boolean {
    const scopes = (cls.get() as Store | undefined)?.[TRANSACTION_SCOPES_KEY];
    if (!scopes) return false;
    for (const name in scopes) if (scopes[name]) return true;
    return false;
  },

  /**
   * Runs `fn` in a new CLS context that is a copy of the current one with `scope` bound for
   * `connectionName` (`undefined` unbinds it: a suspended transaction).
   */
  run<T>(
    connectionName: string,
    scope: TransactionScope | undefined,
    fn: () => T,
  ): T {
    const parent = cls.get() as Store | undefined;
    const scopes = parent?.[TRANSACTION_SCOPES_KEY];
    const store: Store = parent ? { ...parent } : {};
    store[TRANSACTION_SCOPES_KEY] = scopes
      ? { ...scopes, [connectionName]: scope }
      : { [connectionName]: scope };
    return cls.runWith(store, fn);
  },

  /** Runs `fn` with no transaction bound on any connection (after-commit work). */
  runDetached<T>(fn: () => T): T {
    if (!this.hasAny()) return fn();
    const store: Store = { ...(cls.get() as Store) };
    store[TRANSACTION_SCOPES_KEY] = undefined;
    return cls.runWith(store, fn);
  },
};

const CLAIM_KEY = Symbol.for('transactional:claimed-handler');

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
