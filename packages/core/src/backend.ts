import * as tf from '@tensorflow/tfjs';
import { installWasmConvGradients } from './wasm-conv-gradients';

/** Which TensorFlow.js backend to run on; `auto` picks the fastest one that loads. */
export type BackendRequest = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export const BACKEND_REQUESTS: readonly BackendRequest[] = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

export interface BackendChoice {
  /** tfjs backend name as registered (`tensorflow`, `webgpu`, `wasm`, `cpu`). */
  readonly name: string;
  /** Where it came from, for the log line. */
  readonly detail: string;
  /** Backends tried and why they were passed over (only for `auto`). */
  readonly skipped: readonly string[];
}

export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

let chosen: BackendChoice | undefined;

function parseRequest(raw: string | undefined): BackendRequest {
  const value = (raw ?? 'auto').trim().toLowerCase() || 'auto';
  if (!(BACKEND_REQUESTS as readonly string[]).includes(value)) {
    throw new BackendUnavailableError(
      `ID3_BACKEND=${raw}: unknown backend; expected one of ${BACKEND_REQUESTS.join(', ')}`,
    );
  }
  return value as BackendRequest;
}

/** Load a native binding package; a missing or broken native addon must not crash the process. */
function tryRequire(pkg: string): { ok: true } | { ok: false; reason: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(pkg);
    return { ok: true };
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { ok: false, reason: `${pkg}: ${message}` };
  }
}

async function activate(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok) throw new BackendUnavailableError(`tfjs backend '${name}' failed to initialise`);
  await tf.ready();
}

async function tryTensorflow(): Promise<{ detail: string } | { reason: string }> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const loaded = tryRequire(pkg);
    if (loaded.ok && tf.findBackendFactory('tensorflow')) {
      await activate('tensorflow');
      return { detail: pkg };
    }
    if (!loaded.ok) reasons.push(loaded.reason);
  }
  return { reason: reasons.join('; ') };
}

async function tryWebgpu(): Promise<{ detail: string } | { reason: string }> {
  const loaded = tryRequire('@tensorflow/tfjs-backend-webgpu');
  if (!loaded.ok) return { reason: loaded.reason };
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu) {
    // Dawn bindings for Node (the `webgpu` npm package) expose navigator.gpu when installed.
    const dawn = tryRequire('webgpu');
    if (!dawn.ok) return { reason: dawn.reason };
  }
  try {
    await activate('webgpu');
    return { detail: '@tensorflow/tfjs-backend-webgpu' };
  } catch (err) {
    return { reason: `webgpu: ${(err as Error).message}` };
  }
}

async function useWasm(): Promise<{ detail: string }> {
  await import('@tensorflow/tfjs-backend-wasm');
  await activate('wasm');
  installWasmConvGradients();
  return { detail: '@tensorflow/tfjs-backend-wasm (XNNPACK, SIMD, 1 thread)' };
}

/**
 * Select and activate the tfjs backend. `auto` tries tfjs-node-gpu, then tfjs-node, then wasm;
 * an explicitly requested backend that cannot load is an error, never a silent fallback.
 * Idempotent: the first choice sticks for the life of the process.
 */
export async function initBackend(
  request: BackendRequest | string | undefined = process.env.ID3_BACKEND,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<BackendChoice> {
  const wanted = parseRequest(request);
  if (chosen) {
    if (wanted !== 'auto' && wanted !== chosen.name) {
      throw new BackendUnavailableError(
        `backend '${chosen.name}' is already active in this process; cannot switch to '${wanted}'`,
      );
    }
    return chosen;
  }
  const skipped: string[] = [];
  let result: { name: string; detail: string };
  switch (wanted) {
    case 'cpu':
      await activate('cpu');
      result = { name: 'cpu', detail: '@tensorflow/tfjs-backend-cpu (pure JS)' };
      break;
    case 'wasm':
      result = { name: 'wasm', ...(await useWasm()) };
      break;
    case 'tensorflow': {
      const r = await tryTensorflow();
      if ('reason' in r) throw new BackendUnavailableError(`ID3_BACKEND=tensorflow is unavailable: ${r.reason}`);
      result = { name: 'tensorflow', ...r };
      break;
    }
    case 'webgpu': {
      const r = await tryWebgpu();
      if ('reason' in r) throw new BackendUnavailableError(`ID3_BACKEND=webgpu is unavailable: ${r.reason}`);
      result = { name: 'webgpu', ...r };
      break;
    }
    case 'auto': {
      const t = await tryTensorflow();
      if ('detail' in t) {
        result = { name: 'tensorflow', ...t };
        break;
      }
      skipped.push(t.reason);
      result = { name: 'wasm', ...(await useWasm()) };
      break;
    }
  }
  chosen = { ...result, skipped };
  log(`[id3] tfjs backend: ${chosen.name} (${chosen.detail})${skipped.length ? ` — skipped: ${skipped.join('; ')}` : ''}`);
  return chosen;
}

/** The active choice, or undefined before initBackend ran. */
export function activeBackend(): BackendChoice | undefined {
  return chosen;
}

export { tf };
