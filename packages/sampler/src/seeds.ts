import { Rng } from '@id3/core';

/**
 * The seed of one generated image: a pure function of the run seed and (identity, slot,
 * attempt), so any image can be regenerated on its own and a resumed or re-sharded run draws
 * exactly the same noise. `attempt` > 0 are the replacements of a filtered-out image.
 */
export function imageSeed(runSeed: number, identity: number, slot: number, attempt: number): number {
  return new Rng(runSeed).fork(`sample/image/${identity}/${slot}/${attempt}`).nextUint32();
}

/** The stream an image's attributes are drawn from: one per (identity, slot), shared by its attempts. */
export function attributeRng(runSeed: number, identity: number, slot: number): Rng {
  return new Rng(runSeed).fork(`sample/attributes/${identity}/${slot}`);
}
