import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@id3/core';

/** A cache key becomes a folder name: nothing that could leave the cache directory. */
function requirePlainName(what: string, key: string): void {
  if (!/^[A-Za-z0-9._-]+$/.test(key) || key === '.' || key === '..') throw new RangeError(`${what} '${key}' must be a plain name`);
}

/**
 * Embeddings cached on disk by model key and image content hash, so re-evaluating a model on a
 * benchmark is instant and an interrupted extraction resumes where it stopped.
 */
export class EmbeddingCache {
  constructor(
    readonly dir: string,
    /** Names the model and everything that changes its output (alignment, flip, input size). */
    readonly modelKey: string,
  ) {
    requirePlainName('EmbeddingCache: model key', modelKey);
  }

  private path(imageHash: string): string {
    return join(this.dir, this.modelKey, imageHash.slice(0, 2), `${imageHash}.f32`);
  }

  get(imageHash: string, dim: number): Float32Array | undefined {
    const p = this.path(imageHash);
    if (!existsSync(p)) return undefined;
    const bytes = readFileSync(p);
    if (bytes.length !== dim * 4) return undefined; // a different model wrote it: recompute
    return new Float32Array(Uint8Array.from(bytes).buffer);
  }

  set(imageHash: string, embedding: Float32Array): void {
    writeFileAtomic(this.path(imageHash), new Uint8Array(embedding.buffer, embedding.byteOffset, embedding.byteLength));
  }

  /**
   * The image's head yaw in degrees (null: no landmarks to estimate it from), beside its
   * embedding: found by the same detection, so a cached image needs no detector at all.
   * undefined when not cached (an entry written before yaw was recorded).
   */
  getYaw(imageHash: string): number | null | undefined {
    const p = `${this.path(imageHash)}.yaw.json`;
    if (!existsSync(p)) return undefined;
    try {
      const { yaw } = JSON.parse(readFileSync(p, 'utf8')) as { yaw?: unknown };
      return yaw === null || (typeof yaw === 'number' && Number.isFinite(yaw)) ? yaw : undefined;
    } catch {
      return undefined; // unreadable: recompute
    }
  }

  setYaw(imageHash: string, yaw: number | null): void {
    writeFileAtomic(`${this.path(imageHash)}.yaw.json`, JSON.stringify({ yaw }));
  }
}

/** A model's input crop as the detector cut it, with what that detection also gave. */
export interface CachedCrop {
  readonly crop: { readonly width: number; readonly height: number; readonly data: Uint8Array };
  /** Head yaw in degrees from the 68 landmarks; null for a centre-crop fallback. */
  readonly yaw: number | null;
  readonly fallback: boolean;
}

/**
 * Input crops cached by crop layout and image content hash, shared by every model that takes the
 * same crop. The detector is model-independent but costs most of an evaluation (about 0.1 s per
 * LFW image on one core against milliseconds for a small recognizer), so a table of recognizers
 * scored on the same benchmark detects each image once; the crop bytes are exact, so the
 * embeddings are the ones a fresh detection would give.
 */
export class CropCache {
  constructor(
    readonly dir: string,
    /** Names the crop layout (alignment, side, template): models that share it share crops. */
    readonly layoutKey: string,
  ) {
    requirePlainName('CropCache: layout key', layoutKey);
  }

  private path(imageHash: string): string {
    return join(this.dir, 'crops', this.layoutKey, imageHash.slice(0, 2), imageHash);
  }

  get(imageHash: string, side: number): CachedCrop | undefined {
    const p = this.path(imageHash);
    if (!existsSync(`${p}.rgb`) || !existsSync(`${p}.json`)) return undefined;
    try {
      const data = Uint8Array.from(readFileSync(`${p}.rgb`));
      if (data.length !== side * side * 3) return undefined; // another layout wrote it: recompute
      const { yaw, fallback } = JSON.parse(readFileSync(`${p}.json`, 'utf8')) as { yaw?: unknown; fallback?: unknown };
      if (!(yaw === null || (typeof yaw === 'number' && Number.isFinite(yaw))) || typeof fallback !== 'boolean') return undefined;
      return { crop: { width: side, height: side, data }, yaw, fallback };
    } catch {
      return undefined; // unreadable: recompute
    }
  }

  set(imageHash: string, entry: CachedCrop): void {
    const p = this.path(imageHash);
    // The bytes first: an entry counts only once its sidecar exists.
    writeFileAtomic(`${p}.rgb`, entry.crop.data);
    writeFileAtomic(`${p}.json`, JSON.stringify({ yaw: entry.yaw, fallback: entry.fallback }));
  }
}
