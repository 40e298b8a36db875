import { BackendUnavailableError, activeBackend, initBackend } from '../index';

describe('backend selection', () => {
  const quiet = () => undefined;

  it('rejects an unknown backend name, naming it', async () => {
    await expect(initBackend('gpu-please', quiet)).rejects.toThrow(/ID3_BACKEND=gpu-please: unknown backend/);
  });

  it('an explicitly requested backend that is unavailable is an error, not a silent fallback', async () => {
    // tfjs-node cannot install on this machine (its install downloads libtensorflow).
    await expect(initBackend('tensorflow', quiet)).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(initBackend('webgpu', quiet)).rejects.toThrow(/ID3_BACKEND=webgpu is unavailable/);
    expect(activeBackend()).toBeUndefined();
  });

  it('auto falls back to wasm, logs the choice and the skipped backends, and sticks', async () => {
    const lines: string[] = [];
    const choice = await initBackend('auto', (l) => lines.push(l));
    expect(choice.name).toBe('wasm');
    expect(choice.skipped.join(' ')).toMatch(/tfjs-node/);
    expect(lines[0]).toMatch(/tfjs backend: wasm/);
    await expect(initBackend('cpu', quiet)).rejects.toThrow(/already active/);
    expect((await initBackend('auto', quiet)).name).toBe('wasm');
  });
});
