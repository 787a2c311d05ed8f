/**
 * How many TCP connections Node's keep-alive agent opens for 50 sequential POSTs to a server,
 * by the server's `keepAliveTimeout`: `node scripts/keep-alive-timeout.js`. The agent keeps a
 * socket for the server's `Keep-Alive: timeout` less 1 s, so a server that says `timeout=1`
 * gets a new connection per request (the fault suite's sink did, until 2026-12-04).
 */
const http = require('http');

async function connectionsFor(keepAliveTimeout) {
  let connections = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.keepAliveTimeout = keepAliveTimeout;
  server.on('connection', () => connections++);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const agent = new http.Agent({ keepAlive: true });
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve, reject) => {
      const req = http.request(`http://127.0.0.1:${port}/`, {
        method: 'POST',
        agent,
        headers: { 'content-length': 2 },
      });
      req.on('response', (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end('{}');
    });
  }
  agent.destroy();
  server.closeAllConnections();
  server.close();
  return connections;
}

(async () => {
  for (const ms of [1000, 2000, 5000, 30000]) {
    console.log(
      `keepAliveTimeout ${ms} ms: ${await connectionsFor(ms)} connections for 50 requests`,
    );
  }
})();
