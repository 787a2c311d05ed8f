// MariaDB's information_schema.innodb_trx is a cache, refreshed only when nobody has read it
// for 100 ms. This shows what that does to a poll (why libs/transactional/test/outbox-relay.spec.ts
// polls it 150 ms apart on MariaDB): a transaction committed before the poll starts stays
// visible in every read when the reads are 50 ms apart.
//   node scripts/innodb-trx-cache.js   (MariaDB on 127.0.0.1:3306, root, database `test`)
const mysql = require('mysql2/promise');

async function main() {
  const opts = { host: '127.0.0.1', user: 'root', database: 'test' };
  const a = await mysql.createConnection(opts);
  const reader = await mysql.createConnection(opts);
  await a.query('CREATE TABLE IF NOT EXISTS innodb_trx_cache_demo (id int primary key auto_increment)');
  try {
    for (const interval of [50, 150]) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await a.query('START TRANSACTION');
      await a.query('INSERT INTO innodb_trx_cache_demo () VALUES ()');
      const [[{ id }]] = await a.query('SELECT CONNECTION_ID() AS id');
      await reader.query('SELECT * FROM information_schema.innodb_trx'); // read while it is open
      await a.query('COMMIT');
      let seen = 0;
      let reads = 0;
      const started = Date.now();
      while (Date.now() - started < 1500) {
        const [rows] = await reader.query(
          'SELECT 1 FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = ?',
          [id],
        );
        reads++;
        if (rows.length > 0) seen++;
        await new Promise((resolve) => setTimeout(resolve, interval));
      }
      console.log(`reads ${interval} ms apart: the committed transaction in ${seen} of ${reads}`);
    }
  } finally {
    await a.query('DROP TABLE innodb_trx_cache_demo');
    await a.end();
    await reader.end();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
