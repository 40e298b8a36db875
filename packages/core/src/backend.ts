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
    throw new BackendUnavailableError(`ID3_BACKEND=${raw}: unknown backend; expected one of ${BACKEND_REQUESTS.join(', ')}`);
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

/** Whether a backend's packages load here: what `selectBackend` decides on. */
export type BackendAvailability = { readonly ok: true; readonly detail: string } | { readonly ok: false; readonly reason: string };

/** Probes for the optional backends, called only when the request needs them. */
export interface BackendProbes {
  readonly tensorflow: () => BackendAvailability;
  readonly webgpu: () => BackendAvailability;
}

function probeTensorflow(): BackendAvailability {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const loaded = tryRequire(pkg);
    if (loaded.ok && tf.findBackendFactory('tensorflow')) return { ok: true, detail: pkg };
    if (!loaded.ok) reasons.push(loaded.reason);
  }
  return { ok: false, reason: reasons.join('; ') };
}

function probeWebgpu(): BackendAvailability {
  const loaded = tryRequire('@tensorflow/tfjs-backend-webgpu');
  if (!loaded.ok) return { ok: false, reason: loaded.reason };
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu) {
    // Dawn bindings for Node (the `webgpu` npm package) expose navigator.gpu when installed.
    const dawn = tryRequire('webgpu');
    if (!dawn.ok) return { ok: false, reason: dawn.reason };
  }
  return { ok: true, detail: '@tensorflow/tfjs-backend-webgpu' };
}

const WASM_DETAIL = '@tensorflow/tfjs-backend-wasm (XNNPACK, SIMD, 1 thread)';
const CPU_DETAIL = '@tensorflow/tfjs-backend-cpu (pure JS)';

/**
 * The selection rule, without loading anything: given the request and probes saying which
 * optional backends load, the backend to activate (wasm and cpu always load) and, for `auto`,
 * the ones passed over and why. An explicitly requested backend that does not load throws
 * BackendUnavailableError: never a silent fallback.
 */
export function selectBackend(request: BackendRequest, probes: BackendProbes): BackendChoice {
  switch (request) {
    case 'cpu':
      return { name: 'cpu', detail: CPU_DETAIL, skipped: [] };
    case 'wasm':
      return { name: 'wasm', detail: WASM_DETAIL, skipped: [] };
    case 'tensorflow':
    case 'webgpu': {
      const r = probes[request]();
      if (!r.ok) throw new BackendUnavailableError(`ID3_BACKEND=${request} is unavailable: ${r.reason}`);
      return { name: request, detail: r.detail, skipped: [] };
    }
    case 'auto': {
      const t = probes.tensorflow();
      if (t.ok) return { name: 'tensorflow', detail: t.detail, skipped: [] };
      return { name: 'wasm', detail: WASM_DETAIL, skipped: [t.reason] };
    }
  }
}

async function useWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
  await activate('wasm');
  installWasmConvGradients();
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
      throw new BackendUnavailableError(`backend '${chosen.name}' is already active in this process; cannot switch to '${wanted}'`);
    }
    return chosen;
  }
  const choice = selectBackend(wanted, { tensorflow: probeTensorflow, webgpu: probeWebgpu });
  switch (choice.name) {
    case 'cpu':
    case 'tensorflow':
      await activate(choice.name);
      break;
    case 'wasm':
      await useWasm();
      break;
    case 'webgpu':
      try {
        await activate('webgpu');
      } catch (err) {
        throw new BackendUnavailableError(`ID3_BACKEND=webgpu is unavailable: webgpu: ${(err as Error).message}`);
      }
      break;
  }
  chosen = choice;
  const { skipped } = chosen;
  log(`[id3] tfjs backend: ${chosen.name} (${chosen.detail})${skipped.length ? ` — skipped: ${skipped.join('; ')}` : ''}`);
  return chosen;
}

/** The active choice, or undefined before initBackend ran. */
export function activeBackend(): BackendChoice | undefined {
  return chosen;
}

export { tf };
