import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidInputError } from '@id3/core';

/** Root of the shared datasets: ID3_DATA_DIR, default ../shared/data beside the repository. */
export function dataDir(): string {
  return resolve(process.env.ID3_DATA_DIR ?? resolve(__dirname, '../../../../shared/data'));
}

/** A path inside the data dir that must exist; fails loudly, naming it, when it does not. */
export function requireDataPath(...parts: string[]): string {
  const path = resolve(dataDir(), ...parts);
  if (!existsSync(path)) {
    throw new InvalidInputError(`dataset file missing: ${path} (set ID3_DATA_DIR to the folder holding lfw/, utkface/, orl/, samples/)`, {
      file: path,
    });
  }
  return path;
}
