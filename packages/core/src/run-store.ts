import { randomBytes } from 'node:crypto';
import {
  readdirSync,
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { sha256, sha256File } from './hash';
import { InvalidInputError } from './errors';

/** Write a file so that readers only ever see the old or the complete new content. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

export type TensorDtype = 'float32' | 'int32' | 'uint8';
type TypedArrayOf = { float32: Float32Array; int32: Int32Array; uint8: Uint8Array };

/** Header stored beside a raw little-endian tensor file. */
export interface TensorHeader {
  readonly format: 'id3-tensor/1';
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
  /** File name of the raw data, relative to the header. */
  readonly data: string;
  readonly sha256: string;
  /** Free-form description (what the rows are, units). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

const ARRAY_TYPES = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array } as const;

/**
 * Write `<path>.bin` (raw little-endian values) and `<path>.json` (header with dtype, shape and
 * the data's sha256). Returns the header path. The data goes first so a header never points
 * at a missing file.
 */
export function writeTensorFile<D extends TensorDtype>(
  path: string,
  dtype: D,
  shape: readonly number[],
  values: TypedArrayOf[D],
  meta?: Record<string, unknown>,
): string {
  const count = shape.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new RangeError(`writeTensorFile(${path}): ${values.length} values do not fill shape [${shape.join(', ')}]`);
  }
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const dataPath = `${path}.bin`;
  writeFileAtomic(dataPath, bytes);
  const header: TensorHeader = {
    format: 'id3-tensor/1',
    dtype,
    shape: [...shape],
    data: `${baseName(path)}.bin`,
    sha256: sha256(bytes),
    ...(meta ? { meta } : {}),
  };
  writeJsonAtomic(`${path}.json`, header);
  return `${path}.json`;
}

const baseName = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** Read a tensor written by writeTensorFile; verifies size and hash, names the file on error. */
export function readTensorFile(headerPath: string): { header: TensorHeader; values: Float32Array | Int32Array | Uint8Array } {
  const path = headerPath.endsWith('.json') ? headerPath : `${headerPath}.json`;
  let header: TensorHeader;
  try {
    header = JSON.parse(readFileSync(path, 'utf8')) as TensorHeader;
  } catch (err) {
    throw new InvalidInputError(`${path}: cannot read tensor header: ${(err as Error).message}`, { file: path });
  }
  if (header.format !== 'id3-tensor/1' || !(header.dtype in ARRAY_TYPES) || !Array.isArray(header.shape)) {
    throw new InvalidInputError(`${path}: not an id3 tensor header (format/dtype/shape)`, { file: path });
  }
  const dataPath = join(dirname(path), header.data);
  const bytes = readFileSync(dataPath);
  const Ctor = ARRAY_TYPES[header.dtype];
  const count = header.shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * Ctor.BYTES_PER_ELEMENT) {
    throw new InvalidInputError(`${dataPath}: ${bytes.length} bytes, header says [${header.shape.join(', ')}] ${header.dtype}`, {
      file: dataPath,
    });
  }
  if (sha256(bytes) !== header.sha256) {
    throw new InvalidInputError(`${dataPath}: content hash does not match its header (corrupt or replaced)`, { file: dataPath });
  }
  // Copy into an aligned buffer: Buffer slices may start at unaligned offsets.
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  return { header, values: new Ctor(aligned.buffer) };
}

/**
 * sha256 of a folder's sorted listing — relative path, size and content hash of every file — and
 * its total bytes. By content, not mtime: a dataset copied or re-mounted elsewhere (a new machine,
 * a fresh checkout of shared data) is the same input, and hours of finished work stay current;
 * a changed, added or removed photo is a new input. Hashing costs about a second per 100 MB.
 */
export function describeDirectory(root: string): { sha256: string; bytes: number; files: number } {
  const lines: string[] = [];
  let bytes = 0;
  const walk = (dir: string, prefix: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full, rel);
      else {
        const content = readFileSync(full);
        bytes += content.length;
        lines.push(`${rel}\t${content.length}\t${sha256(content)}`);
      }
    }
  };
  walk(root, '');
  lines.sort();
  return { sha256: sha256(Buffer.from(lines.join('\n'))), bytes, files: lines.length };
}

/** One output of a stage as recorded in its manifest. */
export interface OutputRecord {
  /** Relative to the run directory. */
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
}

export interface StageManifest {
  readonly format: 'id3-stage-manifest/1';
  readonly stage: string;
  /** Bumped when a stage's algorithm changes so that old outputs are no longer current. */
  readonly stageVersion: number;
  readonly configHash: string;
  readonly config: unknown;
  /** Hashes of the files this stage read (other stages' outputs, datasets). */
  readonly inputs: Readonly<Record<string, OutputRecord>>;
  readonly outputs: Readonly<Record<string, OutputRecord>>;
  readonly metrics: Readonly<Record<string, number>>;
  readonly backend: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
}

export type StageEvent = 'start' | 'skip' | 'complete' | 'fail' | 'resume' | 'shard-start' | 'shard-complete' | 'shard-fail';

/** The run directory of one pipeline run: one sub-directory per stage, manifests written last. */
export class RunStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    mkdirSync(this.root, { recursive: true });
  }

  stageDir(stage: string): string {
    const dir = join(this.root, stage);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** Path relative to the run directory (what manifests store, so runs can be moved). */
  rel(path: string): string {
    return relative(this.root, resolve(this.root, path));
  }

  abs(path: string): string {
    return isAbsolute(path) ? path : join(this.root, path);
  }

  manifestPath(stage: string): string {
    return join(this.root, stage, 'manifest.json');
  }

  readManifest(stage: string): StageManifest | undefined {
    const path = this.manifestPath(stage);
    if (!existsSync(path)) return undefined;
    try {
      const value = JSON.parse(readFileSync(path, 'utf8')) as StageManifest;
      return value.format === 'id3-stage-manifest/1' ? value : undefined;
    } catch {
      return undefined; // a torn or foreign file is treated as no manifest: the stage re-runs
    }
  }

  writeManifest(manifest: StageManifest): void {
    writeJsonAtomic(this.manifestPath(manifest.stage), manifest);
  }

  /**
   * A file by its content hash; a folder (a dataset read as an input) by its listing: every
   * file's relative path, size and modification time, so an added, removed, resized or touched
   * photo makes the folder another input without hashing gigabytes.
   */
  async describeFile(path: string): Promise<OutputRecord> {
    const absolute = this.abs(path);
    if (statSync(absolute).isDirectory()) return { path: this.rel(absolute), ...describeDirectory(absolute) };
    return { path: this.rel(absolute), sha256: await sha256File(absolute), bytes: statSync(absolute).size };
  }

  /**
   * Whether a stage's recorded outputs are complete and current: its manifest exists, was made
   * with the same stage version, config and inputs, and every output still has its hash.
   */
  async stageStatus(
    stage: string,
    expected: { stageVersion: number; configHash: string; inputs: Readonly<Record<string, OutputRecord>> },
  ): Promise<{ current: true; manifest: StageManifest } | { current: false; reason: string }> {
    const manifest = this.readManifest(stage);
    if (!manifest) return { current: false, reason: 'no manifest' };
    if (manifest.stageVersion !== expected.stageVersion)
      return { current: false, reason: `stage version ${manifest.stageVersion} → ${expected.stageVersion}` };
    if (manifest.configHash !== expected.configHash) return { current: false, reason: 'config changed' };
    const names = new Set([...Object.keys(manifest.inputs), ...Object.keys(expected.inputs)]);
    for (const name of names) {
      if (manifest.inputs[name]?.sha256 !== expected.inputs[name]?.sha256) return { current: false, reason: `input '${name}' changed` };
    }
    for (const [name, out] of Object.entries(manifest.outputs)) {
      const absolute = this.abs(out.path);
      if (!existsSync(absolute)) return { current: false, reason: `output '${name}' missing (${out.path})` };
      if (statSync(absolute).size !== out.bytes || (await sha256File(absolute)) !== out.sha256) {
        return { current: false, reason: `output '${name}' changed (${out.path})` };
      }
    }
    return { current: true, manifest };
  }

  /** Append-only log of stage starts/skips/completions, for people and for tests. */
  logEvent(stage: string, event: StageEvent, detail: Record<string, unknown> = {}): void {
    appendFileSync(
      join(this.root, 'events.jsonl'),
      `${JSON.stringify({ time: new Date().toISOString(), stage, event, pid: process.pid, ...detail })}\n`,
    );
  }

  readEvents(): { time: string; stage: string; event: StageEvent; [k: string]: unknown }[] {
    const path = join(this.root, 'events.jsonl');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { time: string; stage: string; event: StageEvent });
  }
}
