import { readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface UtkFaceRecord {
  readonly path: string;
  readonly age: number;
  /** 0 male, 1 female. */
  readonly gender: number;
  /** 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. */
  readonly race: number;
}

/** `age_gender_race_date.jpg.chip.jpg` → labels; undefined for names that do not follow it. */
export function parseUtkFaceName(name: string): Omit<UtkFaceRecord, 'path'> | undefined {
  const m = /^(\d{1,3})_([01])_([0-4])_\d+\.jpg\.chip\.jpg$/.exec(name);
  if (!m) return undefined;
  const age = Number(m[1]);
  if (age < 1 || age > 116) return undefined;
  return { age, gender: Number(m[2]), race: Number(m[3]) };
}

/** All UTKFace images in a folder, sorted by name; names that do not parse are listed apart. */
export function readUtkFace(dir: string): { records: UtkFaceRecord[]; rejected: { path: string; reason: string }[] } {
  const records: UtkFaceRecord[] = [];
  const rejected: { path: string; reason: string }[] = [];
  for (const name of readdirSync(dir).sort()) {
    const labels = parseUtkFaceName(name);
    if (labels) records.push({ path: join(dir, name), ...labels });
    else rejected.push({ path: join(dir, name), reason: 'file name is not age_gender_race_date.jpg.chip.jpg' });
  }
  return { records, rejected };
}
