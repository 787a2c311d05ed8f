/**
 * Resolves or rejects as `work` does, or rejects with `message` once `ms` have passed; the timer
 * is cleared either way. `work` itself is not cancelled.
 */
export async function withTimeout<T>(
  work: PromiseLike<T>,
  ms: number,
  message = `timed out after ${ms} ms`,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
