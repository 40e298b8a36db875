import { BackendUnavailableError, activeBackend, initBackend } from '../index';
import { selectBackend, type BackendAvailability, type BackendProbes } from '../backend';

// The selection rule is tested with stated availability, so these pass whether or not this
// host has tfjs-node(-gpu) or WebGPU installed (the GPU hosts the project is for do).
const loads = (detail: string): BackendAvailability => ({ ok: true, detail });
const missing = (reason: string): BackendAvailability => ({ ok: false, reason });
const TF_MISSING =
  "@tensorflow/tfjs-node-gpu: Cannot find module '@tensorflow/tfjs-node-gpu'; @tensorflow/tfjs-node: Cannot find module '@tensorflow/tfjs-node'";

function probes(tensorflow: BackendAvailability, webgpu: BackendAvailability): BackendProbes & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    tensorflow: () => {
      calls.push('tensorflow');
      return tensorflow;
    },
    webgpu: () => {
      calls.push('webgpu');
      return webgpu;
    },
  };
}

describe('selectBackend (the selection rule)', () => {
  it('auto chooses tensorflow when tfjs-node(-gpu) loads, skipping nothing', () => {
    const p = probes(loads('@tensorflow/tfjs-node-gpu'), missing('webgpu: no adapter'));
    expect(selectBackend('auto', p)).toEqual({ name: 'tensorflow', detail: '@tensorflow/tfjs-node-gpu', skipped: [] });
  });

  it('auto falls back to wasm when tensorflow does not load, naming tfjs-node in the skipped reasons', () => {
    const choice = selectBackend('auto', probes(missing(TF_MISSING), missing('webgpu: no adapter')));
    expect(choice.name).toBe('wasm');
    expect(choice.detail).toMatch(/tfjs-backend-wasm/);
    expect(choice.skipped).toEqual([TF_MISSING]);
    expect(choice.skipped.join(' ')).toMatch(/tfjs-node/);
  });

  it('an explicit request for a backend that does not load is BackendUnavailableError, not a fallback', () => {
    const p = probes(missing(TF_MISSING), missing('@tensorflow/tfjs-backend-webgpu: Cannot find module'));
    expect(() => selectBackend('tensorflow', p)).toThrow(BackendUnavailableError);
    expect(() => selectBackend('tensorflow', p)).toThrow(/ID3_BACKEND=tensorflow is unavailable: .*tfjs-node/);
    expect(() => selectBackend('webgpu', p)).toThrow(BackendUnavailableError);
    expect(() => selectBackend('webgpu', p)).toThrow(/ID3_BACKEND=webgpu is unavailable: @tensorflow\/tfjs-backend-webgpu/);
  });

  it('an explicit request for a backend that loads chooses it', () => {
    const p = probes(loads('@tensorflow/tfjs-node'), loads('@tensorflow/tfjs-backend-webgpu'));
    expect(selectBackend('tensorflow', p)).toEqual({ name: 'tensorflow', detail: '@tensorflow/tfjs-node', skipped: [] });
    expect(selectBackend('webgpu', p)).toEqual({ name: 'webgpu', detail: '@tensorflow/tfjs-backend-webgpu', skipped: [] });
  });

  it('wasm and cpu are always available and probe nothing', () => {
    const p = probes(loads('@tensorflow/tfjs-node'), loads('@tensorflow/tfjs-backend-webgpu'));
    expect(selectBackend('wasm', p)).toMatchObject({ name: 'wasm', skipped: [] });
    expect(selectBackend('cpu', p)).toMatchObject({ name: 'cpu', skipped: [] });
    expect(p.calls).toEqual([]);
  });

  it('auto does not probe webgpu (it is opt-in)', () => {
    const p = probes(missing(TF_MISSING), loads('@tensorflow/tfjs-backend-webgpu'));
    expect(selectBackend('auto', p).name).toBe('wasm');
    expect(p.calls).toEqual(['tensorflow']);
  });
});

describe('initBackend', () => {
  const quiet = () => undefined;

  it('rejects an unknown backend name, naming it', async () => {
    await expect(initBackend('gpu-please', quiet)).rejects.toThrow(/ID3_BACKEND=gpu-please: unknown backend/);
    expect(activeBackend()).toBeUndefined();
  });

  it('activates the requested backend, logs the choice, and the first choice sticks', async () => {
    const lines: string[] = [];
    const choice = await initBackend('wasm', (l) => lines.push(l));
    expect(choice).toMatchObject({ name: 'wasm', skipped: [] });
    expect(activeBackend()).toBe(choice);
    expect(lines).toEqual([expect.stringMatching(/^\[id3\] tfjs backend: wasm \(@tensorflow\/tfjs-backend-wasm/)]);
    await expect(initBackend('cpu', quiet)).rejects.toThrow(/already active/);
    expect(await initBackend('auto', quiet)).toBe(choice);
    expect(await initBackend('wasm', quiet)).toBe(choice);
  });
});
