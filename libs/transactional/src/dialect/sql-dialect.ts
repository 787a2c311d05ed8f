/**
 * The SQL dialects the library speaks: `'postgres'`, and `'mysql'` for MySQL 8 and MariaDB
 * 10.6+ (TypeORM's `mysql` and `mariadb` drivers).
 */
export type SqlDialect = 'postgres' | 'mysql';

/** What the dialect is read from: a DataSource, or an EntityManager's `connection`. */
interface HasDriverType {
  readonly options: { readonly type: string };
}

/** The dialect of a TypeORM DataSource (`mysql` and `mariadb` drivers: `'mysql'`). */
export function dialectOf(dataSource: HasDriverType): SqlDialect {
  const type = dataSource.options.type;
  return type === 'mysql' || type === 'mariadb' ? 'mysql' : 'postgres';
}

/** `name` as a quoted SQL identifier of the dialect (names are checked to be plain first). */
export function quoteIdentifier(dialect: SqlDialect, name: string): string {
  return dialect === 'mysql' ? `\`${name}\`` : `"${name}"`;
}
