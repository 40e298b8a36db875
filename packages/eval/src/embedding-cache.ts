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
}
