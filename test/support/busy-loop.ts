/**
 * Keeps this process's event loop busy: `busyMs` of synchronous work every 5 ms, until the
 * returned function is called. Apps started by e2e specs share the loop: load shedding sees it.
 */
export function blockTheLoop(busyMs: number): () => void {
  const timer = setInterval(() => {
    const until = Date.now() + busyMs;
    while (Date.now() < until) {
      // busy: the loop runs nothing else
    }
  }, 5);
  return () => clearInterval(timer);
}
