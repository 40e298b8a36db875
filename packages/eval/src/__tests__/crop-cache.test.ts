import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CropCache } from '../index';

describe('CropCache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'id3-crop-cache-'));
  const crop = { width: 2, height: 2, data: Uint8Array.from({ length: 12 }, (_, i) => 20 * i) };

  it('returns the exact bytes, yaw and fallback flag it was given', () => {
    const cache = new CropCache(dir, 'arcface-2-abc');
    expect(cache.get('ab12', 2)).toBeUndefined();
    cache.set('ab12', { crop, yaw: -12.5, fallback: false });
    cache.set('cd34', { crop, yaw: null, fallback: true });
    expect(cache.get('ab12', 2)).toEqual({ crop, yaw: -12.5, fallback: false });
    expect(cache.get('cd34', 2)).toEqual({ crop, yaw: null, fallback: true });
  });

  it('is a miss for another side, another layout, or an entry without its sidecar', () => {
    const cache = new CropCache(dir, 'arcface-2-abc');
    expect(cache.get('ab12', 3)).toBeUndefined(); // 12 bytes are not a 3×3 crop
    expect(new CropCache(dir, 'dlib-chip-2-abc').get('ab12', 2)).toBeUndefined();
    rmSync(join(dir, 'crops', 'arcface-2-abc', 'ab', 'ab12.json'));
    expect(cache.get('ab12', 2)).toBeUndefined();
  });

  it('refuses a layout key that is not a plain name', () => {
    expect(() => new CropCache(dir, '../escape')).toThrow(/plain name/);
  });
});
