import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '@id3/core';

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
    if (!/^[A-Za-z0-9._-]+$/.test(modelKey)) throw new RangeError(`EmbeddingCache: model key '${modelKey}' must be a plain name`);
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
