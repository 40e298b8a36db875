import { closeSync, fstatSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { InvalidInputError } from '@id3/core';

/**
 * MXNet RecordIO (`train.rec` + `train.idx`), the format insightface's training sets ship in
 * (CASIA-WebFace, MS1M, Glint360k, DCFace's released sets, …).
 *
 * `.rec` (dmlc-core `src/recordio.cc`): a sequence of parts, each
 *   uint32 magic 0xced7230a, uint32 lrecord = cflag << 29 | length, `length` payload bytes, zero padding to 4 bytes
 * (little-endian). dmlc's writer scans a payload at 4-byte-aligned offsets for the magic number; every aligned
 * occurrence is cut out and the payload is written as parts: cflag 1 (start), 2 (middle), 3 (end), 0 when it had
 * none. The reader re-inserts the magic between consecutive parts, so the joined payload is
 * part₁ ‖ magic ‖ part₂ ‖ magic ‖ … ‖ partₙ.
 *
 * `.idx` (mxnet `MXIndexedRecordIO`): text lines `key\toffset`, offset = byte position of the record's first part.
 *
 * Image records (mxnet `recordio.pack`): the payload starts with the IRHeader `struct.pack('IfQQ', flag, label, id,
 * id2)` (24 bytes); when flag > 0, `flag` float32 labels follow and replace the scalar label; the rest is the encoded
 * image.
 *
 * All reads are positional reads through a file descriptor: the `.rec` file is never loaded whole.
 */

export const RECORDIO_MAGIC = 0xced7230a;
const MAGIC_BYTES = Buffer.from([0x0a, 0x23, 0xd7, 0xce]);
const LENGTH_BITS = 29;
const MAX_LENGTH = 2 ** LENGTH_BITS - 1;
export const IR_HEADER_SIZE = 24;
/** Payload bytes fetched with the part header when only the IRHeader is wanted (covers flag ≤ 10). */
const HEADER_PREFETCH = 64;

export interface IRHeader {
  /** Number of float32 labels after the fixed header (0: the scalar label is used). */
  readonly flag: number;
  /** The scalar label when flag is 0, else the `flag` float32 labels. */
  readonly label: number | number[];
  readonly id: bigint;
  readonly id2: bigint;
}

export interface ImageRecord {
  readonly header: IRHeader;
  /** Encoded image bytes (JPEG/PNG); empty for insightface's metadata records (key 0 and the identity records). */
  readonly image: Buffer;
}

export interface RecordIo {
  readonly recPath: string;
  readonly idxPath: string;
  /** Keys in `.idx` order. */
  readonly keys: readonly number[];
  has(key: number): boolean;
  /** Byte offset of the key's record in `.rec`. */
  offsetOf(key: number): number;
  /** The record's payload, multi-part records joined as dmlc does. */
  readPayload(key: number): Buffer;
  /** The IRHeader only (reads a few dozen bytes for ordinary records). */
  readHeader(key: number): IRHeader;
  read(key: number): ImageRecord;
  /** The encoded image bytes; an error when the record has none. */
  readImage(key: number): Buffer;
  close(): void;
}

interface Part {
  readonly cflag: number;
  readonly length: number;
  /** Byte offset just past this part's padding. */
  readonly next: number;
  /** The payload bytes, or the first `want` of them. */
  readonly data: Buffer;
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
const CFLAG_NAME = ['whole record', 'start', 'middle', 'end'];

class RecordIoFile implements RecordIo {
  private fd: number | undefined;
  readonly keys: number[];
  private readonly offsets: Float64Array;
  private readonly lookup: (key: number) => number;

  constructor(
    readonly recPath: string,
    readonly idxPath: string,
    fd: number,
    private readonly size: number,
    index: ParsedIndex,
  ) {
    this.fd = fd;
    this.keys = index.keys;
    this.offsets = index.offsets;
    this.lookup = index.lookup;
  }

  has(key: number): boolean {
    return this.lookup(key) >= 0;
  }

  private entry(key: number): number {
    const i = this.lookup(key);
    if (i < 0) throw new InvalidInputError(`${this.idxPath}: no record with key ${key}`, { file: this.idxPath });
    return i;
  }

  offsetOf(key: number): number {
    return this.offsets[this.entry(key)];
  }

  private fail(message: string, entry?: number): never {
    const ctx = entry === undefined ? '' : ` (key ${this.keys[entry]}, ${this.idxPath}:${entry + 1})`;
    throw new InvalidInputError(`${this.recPath}: ${message}${ctx}`, { file: this.recPath });
  }

  private pread(at: number, n: number): Buffer {
    if (this.fd === undefined) throw new Error(`${this.recPath}: RecordIO reader is closed`);
    const buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const r = readSync(this.fd, buf, got, n - got, at + got);
      if (r === 0) break;
      got += r;
    }
    if (got < n) this.fail(`unexpected end of file reading ${n} bytes at byte ${at} (the file shrank while open?)`);
    return buf;
  }

  /** One part at `at`; `want` payload bytes at most (Infinity: all of them). */
  private part(at: number, want: number, entry: number | undefined, multiStart?: number): Part {
    const inMulti = multiStart === undefined ? '' : ` in the multi-part record starting at byte ${multiStart}`;
    if (at + 8 > this.size)
      this.fail(`record header at byte ${at}${inMulti} runs past the end of the file (${this.size} bytes): truncated`, entry);
    const buf = this.pread(at, Number.isFinite(want) ? Math.min(8 + want, this.size - at) : 8);
    const magic = buf.readUInt32LE(0);
    if (magic !== RECORDIO_MAGIC)
      this.fail(
        multiStart === undefined
          ? `bad magic ${hex(magic)} at byte ${at} (expected ${hex(RECORDIO_MAGIC)}): not at a record boundary, or a corrupt file`
          : `bad magic ${hex(magic)} at byte ${at}${inMulti} (expected ${hex(RECORDIO_MAGIC)})`,
        entry,
      );
    const lrec = buf.readUInt32LE(4);
    const cflag = lrec >>> LENGTH_BITS;
    const length = lrec & MAX_LENGTH;
    if (cflag > 3) this.fail(`invalid continuation flag ${cflag} in the record header at byte ${at}${inMulti} (expected 0-3)`, entry);
    const padded = Math.ceil(length / 4) * 4;
    if (at + 8 + padded > this.size)
      this.fail(
        `record at byte ${at}${inMulti} declares ${length} payload bytes (${padded} with padding) but the file ends at byte ${this.size}: truncated`,
        entry,
      );
    const take = Math.min(length, want);
    const data = buf.length >= 8 + take ? buf.subarray(8, 8 + take) : this.pread(at + 8, take);
    return { cflag, length, next: at + 8 + padded, data };
  }

  /** The joined payload (or, for a single-part record, its first `want` bytes) and its full length. */
  private record(entry: number, want = Infinity): { bytes: Buffer; length: number; at: number } {
    const at = this.offsets[entry];
    let p = this.part(at, want, entry);
    if (p.cflag === 2 || p.cflag === 3)
      this.fail(`byte ${at} holds the ${CFLAG_NAME[p.cflag]} part of a multi-part record, not a record boundary`, entry);
    if (p.cflag === 0) return { bytes: p.data, length: p.length, at };
    // Multi-part (dmlc RecordIOReader::NextRecord): join the parts, re-inserting the magic the writer cut out.
    if (p.data.length < p.length) p = this.part(at, Infinity, entry);
    const chunks: Buffer[] = [];
    for (;;) {
      chunks.push(p.data);
      if (p.cflag === 3) break;
      chunks.push(MAGIC_BYTES);
      const pos = p.next;
      if (pos >= this.size)
        this.fail(`multi-part record starting at byte ${at} has no end part: the file ends at byte ${this.size}`, entry);
      p = this.part(pos, Infinity, entry, at);
      if (p.cflag === 0 || p.cflag === 1)
        this.fail(`multi-part record starting at byte ${at} has no end part: byte ${pos} starts a new record (cflag ${p.cflag})`, entry);
    }
    const bytes = Buffer.concat(chunks);
    return { bytes, length: bytes.length, at };
  }

  readPayload(key: number): Buffer {
    return this.record(this.entry(key)).bytes;
  }

  private headerOf(bytes: Buffer, length: number, at: number, entry: number): { header: IRHeader; size: number } {
    const where = `record at byte ${at}`;
    if (length < IR_HEADER_SIZE) this.fail(`${where}: payload of ${length} bytes is shorter than the 24-byte IRHeader`, entry);
    const flag = bytes.readUInt32LE(0);
    const size = IR_HEADER_SIZE + 4 * flag;
    if (size > length)
      this.fail(
        `${where}: IRHeader flag ${flag} announces ${flag} float32 labels (${4 * flag} bytes) but only ${length - IR_HEADER_SIZE} bytes follow the header`,
        entry,
      );
    let label: number | number[] = bytes.readFloatLE(4);
    if (flag > 0) {
      label = [];
      for (let i = 0; i < flag; i++) label.push(bytes.readFloatLE(IR_HEADER_SIZE + 4 * i));
    }
    return { header: { flag, label, id: bytes.readBigUInt64LE(8), id2: bytes.readBigUInt64LE(16) }, size };
  }

  /** The header and the image's byte count, reading only the header's bytes where the record allows. */
  headerInfo(key: number): { header: IRHeader; imageLength: number; at: number; entry: number } {
    const entry = this.entry(key);
    let rec = this.record(entry, HEADER_PREFETCH);
    if (rec.bytes.length >= 4 && rec.length >= IR_HEADER_SIZE) {
      const need = IR_HEADER_SIZE + 4 * rec.bytes.readUInt32LE(0);
      if (need > rec.bytes.length && need <= rec.length) rec = this.record(entry, need);
    }
    const { header, size } = this.headerOf(rec.bytes, rec.length, rec.at, entry);
    return { header, imageLength: rec.length - size, at: rec.at, entry };
  }

  readHeader(key: number): IRHeader {
    return this.headerInfo(key).header;
  }

  read(key: number): ImageRecord {
    const entry = this.entry(key);
    const rec = this.record(entry);
    const { header, size } = this.headerOf(rec.bytes, rec.length, rec.at, entry);
    return { header, image: rec.bytes.subarray(size) };
  }

  readImage(key: number): Buffer {
    const entry = this.entry(key);
    const rec = this.record(entry);
    const { size } = this.headerOf(rec.bytes, rec.length, rec.at, entry);
    if (size === rec.length) this.fail(`record at byte ${rec.at} has no image bytes after its ${size}-byte IRHeader`, entry);
    return rec.bytes.subarray(size);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

interface ParsedIndex {
  keys: number[];
  offsets: Float64Array;
  /** Entry index of a key, or -1. */
  lookup: (key: number) => number;
}

const isSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0d;

/** Parse `.idx` bytes without building one string of the whole file (WebFace-scale indexes run to hundreds of MB). */
function parseIndex(data: Buffer, idxPath: string, recPath: string, recSize: number): ParsedIndex {
  const keys: number[] = [];
  const offsets: number[] = [];
  const fail = (line: number, message: string): never => {
    throw new InvalidInputError(`${idxPath}:${line}: ${message}`, { file: idxPath, line });
  };
  // Integer in data[s, e), or NaN.
  const int = (s: number, e: number, signed: boolean): number => {
    let neg = false;
    if (signed && s < e && data[s] === 0x2d) {
      neg = true;
      s++;
    }
    if (s === e || e - s > 16) return NaN;
    let v = 0;
    for (let i = s; i < e; i++) {
      const d = data[i] - 0x30;
      if (d < 0 || d > 9) return NaN;
      v = v * 10 + d;
    }
    return Number.isSafeInteger(v) ? (neg ? -v : v) : NaN;
  };
  let pos = 0;
  for (let line = 1; pos < data.length; line++) {
    let end = data.indexOf(0x0a, pos);
    if (end < 0) end = data.length;
    let s = pos;
    let e = end;
    pos = end + 1;
    while (s < e && isSpace(data[s])) s++;
    while (e > s && isSpace(data[e - 1])) e--;
    const tab = data.indexOf(0x09, s);
    const key = tab >= 0 && tab < e ? int(s, tab, true) : NaN;
    const offset = tab >= 0 && tab < e ? int(tab + 1, e, false) : NaN;
    if (Number.isNaN(key) || Number.isNaN(offset)) {
      const text = data.subarray(s, Math.min(e, s + 80)).toString('utf8');
      fail(line, `expected 'key<TAB>offset' (two integers), got ${JSON.stringify(text)}`);
    }
    if (offset % 4 !== 0)
      fail(line, `offset ${offset} of key ${key} is not at a record boundary of ${recPath} (records start on 4-byte boundaries)`);
    if (offset + 8 > recSize) fail(line, `offset ${offset} of key ${key} is past the end of ${recPath} (${recSize} bytes)`);
    keys.push(key);
    offsets.push(offset);
  }
  const n = keys.length;
  let min = Infinity;
  let max = -Infinity;
  for (const k of keys) {
    if (k < min) min = k;
    if (k > max) max = k;
  }
  const duplicate = (i: number, j: number): never =>
    fail(Math.max(i, j) + 1, `key ${keys[i]} already appears on line ${Math.min(i, j) + 1}`);
  let lookup: (key: number) => number;
  if (n === 0) {
    lookup = () => -1;
  } else if (min >= 0 && max < 4 * n + 1024) {
    // Dense keys (insightface: 0..N): a direct table.
    const table = new Int32Array(max + 1).fill(-1);
    for (let i = 0; i < n; i++) {
      if (table[keys[i]] >= 0) duplicate(table[keys[i]], i);
      table[keys[i]] = i;
    }
    lookup = (key) => (Number.isInteger(key) && key >= 0 && key <= max ? table[key] : -1);
  } else {
    const order = Uint32Array.from(keys.keys()).sort((a, b) => keys[a] - keys[b]);
    for (let i = 1; i < n; i++) if (keys[order[i]] === keys[order[i - 1]]) duplicate(order[i - 1], order[i]);
    lookup = (key) => {
      let lo = 0;
      let hi = n - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const k = keys[order[mid]];
        if (k === key) return order[mid];
        if (k < key) lo = mid + 1;
        else hi = mid - 1;
      }
      return -1;
    };
  }
  return { keys, offsets: Float64Array.from(offsets), lookup };
}

/** Open `train.rec` + `train.idx` for random access. Call `close()` when done. */
export function openRecordIo(recPath: string, idxPath: string): RecordIo {
  let fd: number;
  let size: number;
  try {
    fd = openSync(recPath, 'r');
    size = fstatSync(fd).size;
  } catch (err) {
    throw new InvalidInputError(`cannot read ${recPath}: ${(err as Error).message}`, { file: recPath });
  }
  try {
    let idx: Buffer;
    try {
      idx = readFileSync(idxPath);
    } catch (err) {
      throw new InvalidInputError(`cannot read ${idxPath}: ${(err as Error).message}`, { file: idxPath });
    }
    return new RecordIoFile(recPath, idxPath, fd, size, parseIndex(idx, idxPath, recPath, size));
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export interface InsightfaceImage {
  readonly key: number;
  /** Identity index (the header's label, or label[0] when it is an array). */
  readonly label: number;
}

export interface InsightfaceDataset {
  readonly recPath: string;
  readonly idxPath: string;
  readonly images: readonly InsightfaceImage[];
  /** Number of classes: record 0's identity-record count when present, else the largest label + 1. */
  readonly identities: number;
  /**
   * From record 0's header when its flag is > 0: images are keys 1 … imageEnd − 1 and the per-identity records
   * (label = [first image key, end image key)) are keys identityStart … identityEnd − 1, identityStart = imageEnd.
   */
  readonly header0?: { readonly identityStart: number; readonly identityEnd: number };
  /** Encoded bytes of `images[index]`, read on demand. */
  imageBytes(index: number): Buffer;
  readonly recordIo: RecordIo;
  close(): void;
}

/**
 * An insightface training set, following `MXFaceDataset` (recognition/arcface_torch/dataset.py): when record 0's
 * header has flag > 0, its label is [identityStart, identityEnd] and the images are keys 1 … identityStart − 1;
 * otherwise every key is an image. Each image's identity is its header label (label[0] when an array). Reads every
 * image's IRHeader (not its image) to collect labels and check the file; image bytes are read by `imageBytes`.
 */
export function readInsightfaceDataset(recPath: string, idxPath: string): InsightfaceDataset {
  const rio = openRecordIo(recPath, idxPath) as RecordIoFile;
  try {
    const fail = (message: string): never => {
      throw new InvalidInputError(`${recPath}: ${message}`, { file: recPath });
    };
    let imageKeys: readonly number[] = rio.keys;
    let header0: InsightfaceDataset['header0'];
    if (rio.has(0)) {
      const h = rio.readHeader(0);
      if (h.flag > 0) {
        const label = h.label as number[];
        const [start, end] = label;
        if (label.length < 2 || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 1 || end < start)
          fail(
            `record 0's header (flag ${h.flag}, label [${label.join(', ')}]) is not insightface's [identityStart, identityEnd] with 1 ≤ identityStart ≤ identityEnd`,
          );
        header0 = { identityStart: start, identityEnd: end };
        const keys: number[] = [];
        for (let k = 1; k < start; k++) {
          if (!rio.has(k)) fail(`record 0's header says images are keys 1-${start - 1}, but key ${k} is not in ${idxPath}`);
          keys.push(k);
        }
        imageKeys = keys;
      }
    }
    const images: InsightfaceImage[] = [];
    let maxLabel = -1;
    for (const key of imageKeys) {
      const { header, imageLength, at, entry } = rio.headerInfo(key);
      const where = `image key ${key} (${idxPath}:${entry + 1}, record at byte ${at})`;
      const label = typeof header.label === 'number' ? header.label : header.label[0];
      if (!Number.isInteger(label) || label < 0 || label > 0x7fffffff)
        fail(`${where} has label ${label}: expected a non-negative integer identity`);
      if (imageLength === 0) fail(`${where} has no image bytes after its IRHeader`);
      if (header0 && label >= header0.identityEnd - header0.identityStart)
        fail(`${where} has label ${label}, outside the ${header0.identityEnd - header0.identityStart} identities record 0 declares`);
      if (label > maxLabel) maxLabel = label;
      images.push({ key, label });
    }
    return {
      recPath,
      idxPath,
      images,
      identities: header0 ? header0.identityEnd - header0.identityStart : maxLabel + 1,
      header0,
      imageBytes: (index: number) => {
        const image = images[index];
        if (!image) throw new RangeError(`image index ${index} out of range (0-${images.length - 1})`);
        return rio.readImage(image.key);
      },
      recordIo: rio,
      close: () => rio.close(),
    };
  } catch (err) {
    rio.close();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing (in memory; for test fixtures and small sets).

/** One record in dmlc's byte layout (RecordIOWriter::WriteRecord), split into parts at aligned magic numbers. */
export function encodeRecord(payload: Uint8Array): Buffer {
  const len = payload.length;
  if (len > MAX_LENGTH) throw new RangeError(`RecordIO records must be shorter than 2^29 bytes (got ${len})`);
  const out: Buffer[] = [];
  const head = (cflag: number, length: number): Buffer => {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(RECORDIO_MAGIC, 0);
    h.writeUInt32LE(((cflag << LENGTH_BITS) | length) >>> 0, 4);
    return h;
  };
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  let dptr = 0;
  // dmlc tests every 4-byte-aligned word; only aligned occurrences split the record.
  for (let i = bytes.indexOf(MAGIC_BYTES); i >= 0; i = bytes.indexOf(MAGIC_BYTES, i + 1)) {
    if (i % 4 !== 0) continue;
    out.push(head(dptr === 0 ? 1 : 2, i - dptr), bytes.subarray(dptr, i));
    dptr = i + 4;
  }
  out.push(head(dptr !== 0 ? 3 : 0, len - dptr), bytes.subarray(dptr, len), Buffer.alloc(Math.ceil(len / 4) * 4 - len));
  return Buffer.concat(out);
}

/** mxnet `recordio.pack`: an array label sets flag to its length and is stored after the header (scalar label 0). */
export function packImageRecord(
  header: { label: number | readonly number[]; id?: number | bigint; id2?: number | bigint },
  image: Uint8Array,
): Buffer {
  const labels = typeof header.label === 'number' ? [] : header.label;
  const h = Buffer.alloc(IR_HEADER_SIZE + 4 * labels.length);
  h.writeUInt32LE(labels.length, 0);
  h.writeFloatLE(typeof header.label === 'number' ? header.label : 0, 4);
  h.writeBigUInt64LE(BigInt(header.id ?? 0), 8);
  h.writeBigUInt64LE(BigInt(header.id2 ?? 0), 16);
  labels.forEach((v, i) => h.writeFloatLE(v, IR_HEADER_SIZE + 4 * i));
  return Buffer.concat([h, image]);
}

/** Write `.rec` + `.idx` as mxnet `MXIndexedRecordIO.write_idx` does, records in the given order. */
export function writeRecordIo(recPath: string, idxPath: string, records: Iterable<{ key: number; payload: Uint8Array }>): void {
  const parts: Buffer[] = [];
  const lines: string[] = [];
  let pos = 0;
  for (const { key, payload } of records) {
    const rec = encodeRecord(payload);
    lines.push(`${key}\t${pos}\n`);
    parts.push(rec);
    pos += rec.length;
  }
  writeFileSync(recPath, Buffer.concat(parts));
  writeFileSync(idxPath, lines.join(''));
}

/**
 * Write an insightface training set laid out as `face2rec2.py` writes it: images as keys 1 … N (grouped by label,
 * labels 0 … K − 1 all present), then record 0 with label [N + 1, N + 1 + K], then one record per identity with
 * label [first image key, end image key). Metadata records carry no image.
 */
export function writeInsightfaceRecordIo(recPath: string, idxPath: string, images: readonly { label: number; image: Uint8Array }[]): void {
  const sorted = images.map((img, i) => ({ ...img, i })).sort((a, b) => a.label - b.label || a.i - b.i);
  const records: { key: number; payload: Uint8Array }[] = [];
  const ranges: [number, number][] = [];
  sorted.forEach(({ label, image }, i) => {
    const key = i + 1;
    if (!Number.isInteger(label) || label < 0) throw new RangeError(`label ${label} is not a non-negative integer`);
    if (label === ranges.length) ranges.push([key, key + 1]);
    else if (label === ranges.length - 1) ranges[label][1] = key + 1;
    else throw new RangeError(`labels must be 0 … K − 1 with none missing (label ${ranges.length} has no image)`);
    records.push({ key, payload: packImageRecord({ label, id: key }, image) });
  });
  const start = sorted.length + 1;
  const none = new Uint8Array(0);
  records.push({ key: 0, payload: packImageRecord({ label: [start, start + ranges.length] }, none) });
  ranges.forEach((range, i) => records.push({ key: start + i, payload: packImageRecord({ label: range, id: start + i }, none) }));
  writeRecordIo(recPath, idxPath, records);
}
