import { Rng } from '@id3/core';

/**
 * The prepared rows train-diffusion keeps out of training (its previews and evaluation use
 * them): a seeded shuffle of 0..n−1, the first `holdout`, sorted. Anything fitted on "training
 * data" (the identity space) excludes exactly these.
 */
export function heldOutRows(n: number, seed: number, holdout: number): number[] {
  const order = new Rng(seed).fork('holdout').shuffle(Array.from({ length: n }, (_, i) => i));
  return order.slice(0, holdout).sort((a, b) => a - b);
}
