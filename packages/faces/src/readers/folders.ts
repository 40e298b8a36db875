import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { InvalidInputError } from '@id3/core';

export interface LabelledImage {
  readonly path: string;
  /** Identity index (sorted folder order). */
  readonly label: number;
  readonly identity: string;
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.pgm', '.ppm', '.webp', '.bmp', '.tif', '.tiff']);

/**
 * An identity-per-folder dataset (ORL's s1…s40, or any `<identity>/<image>` tree). Folders and
 * files are sorted naturally (s2 before s10) so labels are stable; non-image files are skipped.
 */
export function readImageFolders(root: string): { images: LabelledImage[]; identities: string[] } {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (err) {
    throw new InvalidInputError(`cannot read dataset folder ${root}: ${(err as Error).message}`, { file: root });
  }
  const natural = new Intl.Collator('en', { numeric: true }).compare;
  const identities = entries.filter((e) => statSync(join(root, e)).isDirectory()).sort(natural);
  if (identities.length === 0) throw new InvalidInputError(`${root}: no identity sub-folders`, { file: root });
  const images: LabelledImage[] = [];
  identities.forEach((identity, label) => {
    for (const file of readdirSync(join(root, identity)).sort(natural)) {
      if (IMAGE_EXTENSIONS.has(extname(file).toLowerCase())) images.push({ path: join(root, identity, file), label, identity });
    }
  });
  return { images, identities };
}
