import { availableParallelism } from 'node:os';

/**
 * How many threads compute gradients: 'auto' = every core (at most 8) on the CPU backends,
 * where tfjs-wasm runs one thread per backend in Node; one on GPU backends.
 */
export function resolveThreads(threads: number | 'auto', backend: string): number {
  if (threads !== 'auto') return threads;
  return backend === 'wasm' || backend === 'cpu' ? Math.min(availableParallelism(), 8) : 1;
}
