import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { isInvalidInput } from '@id3/core';
import { decodeImageBytes } from '../image-io';
import {
  RECORDIO_MAGIC,
  encodeRecord,
  openRecordIo,
  packImageRecord,
  readInsightfaceDataset,
  writeInsightfaceRecordIo,
  writeRecordIo,
} from '../readers/recordio';

// Files are written to the spec (dmlc-core src/recordio.cc, mxnet python/mxnet/recordio.py, insightface
// face2rec2.py) — byte-exact literals where the layout itself is under test — then read back or hand-corrupted.

const tmp = () => mkdtempSync(join(tmpdir(), 'id3-recordio-'));
const MAGIC = Buffer.from([0x0a, 0x23, 0xd7, 0xce]);
const u32 = (...values: number[]) => {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, 4 * i));
  return b;
};
/** A part header: magic, cflag << 29 | length. */
const head = (cflag: number, length: number) => u32(RECORDIO_MAGIC, (cflag << 29) | length);
const bytes = (...values: number[]) => Buffer.from(values);
/** A float32 whose bit pattern is the magic number: a label array holding it puts the magic into the payload. */
const MAGIC_FLOAT = MAGIC.readFloatLE(0);

function files(dir = tmp()) {
  return { dir, rec: join(dir, 'train.rec'), idx: join(dir, 'train.idx') };
}

/** Expect an InvalidInputError whose message matches all the patterns. */
function expectInvalid(fn: () => unknown, ...patterns: RegExp[]) {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(isInvalidInput(error)).toBe(true);
  for (const p of patterns) expect((error as Error).message).toMatch(p);
}

async function testImage(seed: number, format: 'png' | 'jpeg', width = 24, height = 20) {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = (x * 10 + seed * 40) & 255;
      raw[i + 1] = (y * 12 + seed * 70) & 255;
      raw[i + 2] = (seed * 90 + 30) & 255;
    }
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  const encoded = await (format === 'png' ? img.png() : img.jpeg({ quality: 95 })).toBuffer();
  return { raw, encoded, width, height };
}

describe('dmlc RecordIO byte layout', () => {
  it('writes a record without an aligned magic as one part (cflag 0), padded to 4 bytes', () => {
    // The magic at offset 1 is not 4-aligned: dmlc only splits at aligned occurrences.
    const payload = bytes(0x01, 0x0a, 0x23, 0xd7, 0xce);
    expect(encodeRecord(payload)).toEqual(Buffer.concat([head(0, 5), payload, bytes(0, 0, 0)]));
    expect(encodeRecord(bytes())).toEqual(head(0, 0));
  });

  it('cuts aligned magic numbers out and writes start/middle/end parts, as RecordIOWriter::WriteRecord', () => {
    const payload = Buffer.concat([bytes(1, 2, 3, 4), MAGIC, bytes(5, 6, 7, 8), MAGIC, MAGIC, bytes(9, 10)]);
    expect(encodeRecord(payload)).toEqual(
      Buffer.concat([
        head(1, 4),
        bytes(1, 2, 3, 4),
        head(2, 4),
        bytes(5, 6, 7, 8),
        head(2, 0), // two magics in a row: an empty middle part
        head(3, 2),
        bytes(9, 10, 0, 0),
      ]),
    );
    // A payload that starts and ends with the magic: empty start and end parts.
    expect(encodeRecord(Buffer.concat([MAGIC, bytes(7, 7, 7, 7), MAGIC]))).toEqual(
      Buffer.concat([head(1, 0), head(2, 4), bytes(7, 7, 7, 7), head(3, 0)]),
    );
  });

  it('reads hand-built files, joining multi-part records with the magic re-inserted', () => {
    const { rec, idx } = files();
    const records = [
      Buffer.concat([head(0, 3), bytes(0xaa, 0xbb, 0xcc, 0)]), // at 0
      Buffer.concat([head(1, 4), bytes(1, 2, 3, 4), head(2, 0), head(3, 1), bytes(9, 0, 0, 0)]), // at 12
      Buffer.concat([head(1, 0), head(3, 0)]), // at 44: the payload is the magic alone
      head(0, 0), // at 60: empty
    ];
    writeFileSync(rec, Buffer.concat(records));
    writeFileSync(idx, '7\t0\n3\t12\r\n10\t44\n0\t60\n');
    const rio = openRecordIo(rec, idx);
    expect(rio.keys).toEqual([7, 3, 10, 0]);
    expect(rio.offsetOf(10)).toBe(44);
    expect(rio.readPayload(7)).toEqual(bytes(0xaa, 0xbb, 0xcc));
    expect(rio.readPayload(3)).toEqual(Buffer.concat([bytes(1, 2, 3, 4), MAGIC, MAGIC, bytes(9)]));
    expect(rio.readPayload(10)).toEqual(MAGIC);
    expect(rio.readPayload(0)).toEqual(bytes());
    expect(rio.has(5)).toBe(false);
    expectInvalid(() => rio.readPayload(5), /train\.idx: no record with key 5/);
    rio.close();
    expect(() => rio.readPayload(7)).toThrow(/closed/);
  });

  it('round-trips random payloads with magic numbers at aligned and unaligned positions', () => {
    const { rec, idx } = files();
    let state = 12345;
    const rand = (n: number) => {
      // mulberry32
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const payloads: Buffer[] = [];
    for (let r = 0; r < 60; r++) {
      const b = Buffer.alloc(rand(70));
      for (let i = 0; i < b.length; i++) b[i] = rand(256);
      for (let m = rand(4); m > 0 && b.length >= 4; m--) {
        const at = rand(b.length - 3);
        MAGIC.copy(b, rand(2) ? at : at & ~3);
      }
      payloads.push(b);
    }
    const split = payloads.filter((p) => encodeRecord(p).readUInt32LE(4) >>> 29 !== 0).length;
    expect(split).toBeGreaterThan(10); // the set exercises multi-part records
    // Sparse keys take the sorted-index path of the key lookup.
    writeRecordIo(
      rec,
      idx,
      payloads.map((payload, i) => ({ key: i * 1000 + 3, payload })),
    );
    const rio = openRecordIo(rec, idx);
    payloads.forEach((p, i) => expect(rio.readPayload(i * 1000 + 3)).toEqual(p));
    rio.close();
  });
});

describe('image records (IRHeader)', () => {
  it('packs and reads a scalar label, an array label, ids, and a PNG that decodes pixel-exact', async () => {
    const { rec, idx } = files();
    const png = await testImage(1, 'png');
    const jpeg = await testImage(2, 'jpeg');
    writeRecordIo(rec, idx, [
      { key: 1, payload: packImageRecord({ label: 42, id: 9, id2: 2n ** 40n }, png.encoded) },
      { key: 2, payload: packImageRecord({ label: [3, 0.5, -1] }, jpeg.encoded) },
    ]);
    // The IRHeader bytes are struct.pack('IfQQ', 0, 42.0, 9, 2**40).
    expect(readFileSync(rec).subarray(8, 32)).toEqual(
      Buffer.concat([u32(0), Buffer.from(new Float32Array([42]).buffer), u32(9, 0, 0, 256)]),
    );
    const rio = openRecordIo(rec, idx);
    const a = rio.read(1);
    expect(a.header).toEqual({ flag: 0, label: 42, id: 9n, id2: 2n ** 40n });
    expect(a.image).toEqual(png.encoded);
    const decoded = await decodeImageBytes(rio.readImage(1), 'key 1');
    expect(decoded.width).toBe(png.width);
    expect(Buffer.from(decoded.data)).toEqual(png.raw);
    const b = rio.read(2);
    expect(b.header).toEqual({ flag: 3, label: [3, 0.5, -1], id: 0n, id2: 0n });
    expect(rio.readHeader(2)).toEqual(b.header);
    const jd = await decodeImageBytes(b.image, 'key 2');
    let diff = 0;
    for (let i = 0; i < jd.data.length; i++) diff += Math.abs(jd.data[i] - jpeg.raw[i]);
    expect(diff / jd.data.length).toBeLessThan(12); // JPEG loss; another image differs by ~80
    rio.close();
  });

  it('reads an image record that dmlc had to split because its header contains the magic', async () => {
    const { rec, idx } = files();
    const png = await testImage(3, 'png');
    // id = magic (aligned at payload byte 8) and a label array holding the magic's bit pattern (byte 28).
    const payload = packImageRecord({ label: [5, MAGIC_FLOAT], id: RECORDIO_MAGIC }, png.encoded);
    const mid = packImageRecord({ label: 1 }, png.encoded);
    writeRecordIo(rec, idx, [
      { key: 0, payload: mid },
      { key: 1, payload },
      { key: 2, payload: mid },
    ]);
    const rio = openRecordIo(rec, idx);
    const raw = readFileSync(rec);
    expect(raw.readUInt32LE(rio.offsetOf(1) + 4) >>> 29).toBe(1); // stored as a multi-part record
    expect(encodeRecord(payload)).toEqual(
      Buffer.concat([
        head(1, 8),
        payload.subarray(0, 8),
        head(2, 16),
        payload.subarray(12, 28),
        head(3, payload.length - 32),
        payload.subarray(32),
        Buffer.alloc((4 - (payload.length % 4)) % 4),
      ]),
    );
    expect(rio.readPayload(1)).toEqual(payload);
    const r = rio.read(1);
    expect(r.header).toEqual({ flag: 2, label: [5, MAGIC_FLOAT], id: BigInt(RECORDIO_MAGIC), id2: 0n });
    expect(rio.readHeader(1)).toEqual(r.header);
    expect(Buffer.from((await decodeImageBytes(r.image, 'key 1')).data)).toEqual(png.raw);
    expect(rio.read(2).image).toEqual(png.encoded); // the record after it is still found
    rio.close();
  });
});

describe('readInsightfaceDataset', () => {
  it('reads a face2rec2-layout set: header record 0, images 1…N, identity records, lazy image bytes', async () => {
    const { rec, idx } = files();
    const imgs = await Promise.all([
      testImage(0, 'png'),
      testImage(1, 'jpeg'),
      testImage(2, 'png'),
      testImage(3, 'png'),
      testImage(4, 'jpeg'),
    ]);
    const labels = [2, 0, 1, 0, 2];
    writeInsightfaceRecordIo(
      rec,
      idx,
      imgs.map((img, i) => ({ label: labels[i], image: img.encoded })),
    );
    // face2rec2 writes the images first: record 0 is not at the start of the file.
    expect(
      readFileSync(idx, 'utf8')
        .split('\n')
        .slice(0, 6)
        .map((l) => l.split('\t')[0]),
    ).toEqual(['1', '2', '3', '4', '5', '0']);
    const ds = readInsightfaceDataset(rec, idx);
    expect(ds.identities).toBe(3);
    expect(ds.header0).toEqual({ identityStart: 6, identityEnd: 9 });
    expect(ds.images).toEqual([
      { key: 1, label: 0 },
      { key: 2, label: 0 },
      { key: 3, label: 1 },
      { key: 4, label: 2 },
      { key: 5, label: 2 },
    ]);
    // The identity records hold [first image key, end image key).
    expect(ds.recordIo.readHeader(6).label).toEqual([1, 3]);
    expect(ds.recordIo.readHeader(8).label).toEqual([4, 6]);
    expect(ds.recordIo.read(7).image).toHaveLength(0);
    // Grouping by label is stable: key 3 is the third input image (label 1), key 4 the first (label 2).
    expect(ds.imageBytes(2)).toEqual(imgs[2].encoded);
    const d = await decodeImageBytes(ds.imageBytes(3), 'image 3');
    expect(Buffer.from(d.data)).toEqual(imgs[0].raw);
    expect(() => ds.imageBytes(5)).toThrow(RangeError);
    ds.close();
  });

  it('without a header record every key is an image; array labels use label[0]; identities = max label + 1', async () => {
    const { rec, idx } = files();
    const img = (await testImage(5, 'jpeg')).encoded;
    writeRecordIo(rec, idx, [
      { key: 0, payload: packImageRecord({ label: 4 }, img) },
      { key: 1, payload: packImageRecord({ label: 1 }, img) },
      { key: 2, payload: packImageRecord({ label: [7, 0.25] }, img) },
    ]);
    const ds = readInsightfaceDataset(rec, idx);
    expect(ds.header0).toBeUndefined();
    expect(ds.images).toEqual([
      { key: 0, label: 4 },
      { key: 1, label: 1 },
      { key: 2, label: 7 },
    ]);
    expect(ds.identities).toBe(8);
    expect(ds.imageBytes(2)).toEqual(img);
    ds.close();
  });
});

describe('errors name the file and the byte offset or idx line', () => {
  /** Three image records, a 24-byte IRHeader + an 8-byte image each (40 bytes on disk): at bytes 0, 40, 80. */
  function fixture() {
    const f = files();
    const image = bytes(0xff, 0xd8, 0xff, 0xe0, 0, 0, 0xff, 0xd9);
    writeRecordIo(
      f.rec,
      f.idx,
      [0, 1, 2].map((key) => ({ key, payload: packImageRecord({ label: key }, image) })),
    );
    return f;
  }

  it('bad magic', () => {
    const { rec, idx } = fixture();
    const data = readFileSync(rec);
    data.writeUInt32LE(0xdeadbeef, 40);
    writeFileSync(rec, data);
    const rio = openRecordIo(rec, idx);
    expectInvalid(() => rio.read(1), /train\.rec: bad magic 0xdeadbeef at byte 40 \(expected 0xced7230a\)/, /key 1, .*train\.idx:2/);
    expect(rio.read(2).header.label).toBe(2);
    rio.close();
  });

  it('a length running past the end of the file (truncated)', () => {
    const { rec, idx } = fixture();
    truncateSync(rec, 110);
    const rio = openRecordIo(rec, idx);
    expectInvalid(
      () => rio.read(2),
      /train\.rec: record at byte 80 declares 32 payload bytes \(32 with padding\) but the file ends at byte 110: truncated/,
    );
    rio.close();
    // An lrecord length beyond the file.
    const f = fixture();
    const data = readFileSync(f.rec);
    data.writeUInt32LE(1000, 4);
    writeFileSync(f.rec, data);
    expectInvalid(() => openRecordIo(f.rec, f.idx).readHeader(0), /byte 0 declares 1000 payload bytes .*file ends at byte 120: truncated/);
  });

  it('an idx line that is not int<TAB>int', () => {
    const { rec, idx } = fixture();
    for (const [text, line, got] of [
      ['0\t0\n1 40\n', 2, '1 40'],
      ['0\t0\nx\t40\n', 2, 'x\\t40'],
      ['0\t0\n1\t40\t5\n', 2, '1\\t40\\t5'],
      ['0\t0\n\n1\t40\n', 2, ''],
      ['0\t-40\n', 1, '0\\t-40'],
      ['0\t99999999999999999999\n', 1, '0\\t99999999999999999999'],
    ] as const) {
      writeFileSync(idx, text);
      const escaped = got.replace(/\\/g, '\\\\');
      expectInvalid(
        () => openRecordIo(rec, idx),
        new RegExp(`train\\.idx:${line}: expected 'key<TAB>offset' \\(two integers\\), got "${escaped}"`),
      );
    }
    writeFileSync(idx, '0\t0\n1\t40\n0\t80\n');
    expectInvalid(() => openRecordIo(rec, idx), /train\.idx:3: key 0 already appears on line 1/);
  });

  it('an idx offset past the end of the file or not at a record boundary', () => {
    const { rec, idx } = fixture();
    writeFileSync(idx, '0\t0\n1\t120\n');
    expectInvalid(() => openRecordIo(rec, idx), /train\.idx:2: offset 120 of key 1 is past the end of .*train\.rec \(120 bytes\)/);
    writeFileSync(idx, '0\t0\n1\t42\n');
    expectInvalid(() => openRecordIo(rec, idx), /train\.idx:2: offset 42 of key 1 is not at a record boundary/);
    // Aligned, but inside a record's payload.
    writeFileSync(idx, '0\t0\n1\t48\n');
    const rio = openRecordIo(rec, idx);
    expectInvalid(() => rio.read(1), /train\.rec: bad magic 0x\w+ at byte 48 .*not at a record boundary/, /train\.idx:2/);
    rio.close();
    // At the middle or end part of a multi-part record.
    const f = files();
    writeFileSync(f.rec, Buffer.concat([head(1, 0), head(2, 0), head(3, 0)]));
    writeFileSync(f.idx, '0\t0\n1\t8\n2\t16\n');
    const mp = openRecordIo(f.rec, f.idx);
    expect(mp.readPayload(0)).toEqual(Buffer.concat([MAGIC, MAGIC]));
    expectInvalid(() => mp.readPayload(1), /byte 8 holds the middle part of a multi-part record, not a record boundary/);
    expectInvalid(() => mp.readPayload(2), /byte 16 holds the end part of a multi-part record, not a record boundary/);
    mp.close();
  });

  it('a multi-part record with a missing end', () => {
    const { rec, idx } = files();
    writeFileSync(rec, Buffer.concat([head(1, 4), bytes(1, 2, 3, 4), head(2, 0)]));
    writeFileSync(idx, '0\t0\n');
    expectInvalid(
      () => openRecordIo(rec, idx).readPayload(0),
      /multi-part record starting at byte 0 has no end part: the file ends at byte 20/,
    );
    writeFileSync(rec, Buffer.concat([head(1, 4), bytes(1, 2, 3, 4), head(0, 4), bytes(5, 6, 7, 8)]));
    writeFileSync(idx, '0\t0\n1\t12\n');
    expectInvalid(
      () => openRecordIo(rec, idx).readPayload(0),
      /starting at byte 0 has no end part: byte 12 starts a new record \(cflag 0\)/,
    );
    // A continuation part cut short, and an unknown continuation flag.
    writeFileSync(rec, Buffer.concat([head(1, 4), bytes(1, 2, 3, 4), head(3, 8), bytes(5, 6)]));
    writeFileSync(idx, '0\t0\n');
    expectInvalid(
      () => openRecordIo(rec, idx).readPayload(0),
      /record at byte 12 in the multi-part record starting at byte 0 declares 8 .*truncated/,
    );
    writeFileSync(rec, head(5, 0));
    expectInvalid(() => openRecordIo(rec, idx).readPayload(0), /invalid continuation flag 5 in the record header at byte 0/);
  });

  it('an IRHeader shorter than 24 bytes, or whose labels run past the payload', () => {
    const { rec, idx } = files();
    writeRecordIo(rec, idx, [
      { key: 0, payload: Buffer.alloc(20) },
      { key: 1, payload: Buffer.concat([u32(3), Buffer.alloc(20), u32(0, 0)]) },
      { key: 2, payload: Buffer.concat([MAGIC, Buffer.alloc(20)]) }, // flag = 0xced7230a, and a multi-part record
    ]);
    const rio = openRecordIo(rec, idx);
    expectInvalid(() => rio.read(0), /train\.rec: record at byte 0: payload of 20 bytes is shorter than the 24-byte IRHeader/, /key 0/);
    expectInvalid(() => rio.readHeader(0), /shorter than the 24-byte IRHeader/);
    expectInvalid(() => rio.read(1), /record at byte 28: IRHeader flag 3 announces 3 float32 labels \(12 bytes\) but only 8 bytes follow/);
    expectInvalid(() => rio.readHeader(1), /IRHeader flag 3 announces 3 float32 labels/);
    expectInvalid(() => rio.readHeader(2), /record at byte 68: IRHeader flag 3470205706 announces/);
    rio.close();
  });

  it('an empty image payload', () => {
    const { rec, idx } = files();
    writeRecordIo(rec, idx, [
      { key: 0, payload: packImageRecord({ label: 0 }, bytes(1, 2)) },
      { key: 1, payload: packImageRecord({ label: [1, 2] }, bytes()) },
    ]);
    const rio = openRecordIo(rec, idx);
    expect(rio.read(1).image).toHaveLength(0); // a plain read is fine: metadata records have no image
    expectInvalid(() => rio.readImage(1), /record at byte 36 has no image bytes after its 32-byte IRHeader/, /key 1/);
    rio.close();
    // In a dataset without a header record, key 1 is an image.
    writeRecordIo(rec, idx, [
      { key: 0, payload: packImageRecord({ label: 0 }, bytes(1, 2)) },
      { key: 1, payload: packImageRecord({ label: 1 }, bytes()) },
    ]);
    expectInvalid(() => readInsightfaceDataset(rec, idx), /image key 1 \(.*train\.idx:2, record at byte 36\) has no image bytes/);
  });

  it('inconsistent insightface sets: a missing image key, a label outside the identities, a non-integer label', () => {
    const { rec, idx } = files();
    const image = bytes(1, 2, 3);
    writeRecordIo(rec, idx, [
      { key: 0, payload: packImageRecord({ label: [4, 6] }, bytes()) },
      { key: 1, payload: packImageRecord({ label: 0 }, image) },
      { key: 3, payload: packImageRecord({ label: 1 }, image) },
    ]);
    expectInvalid(() => readInsightfaceDataset(rec, idx), /record 0's header says images are keys 1-3, but key 2 is not in .*train\.idx/);
    writeRecordIo(rec, idx, [
      { key: 0, payload: packImageRecord({ label: [2, 4] }, bytes()) },
      { key: 1, payload: packImageRecord({ label: 2 }, image) },
    ]);
    expectInvalid(() => readInsightfaceDataset(rec, idx), /image key 1 .* has label 2, outside the 2 identities record 0 declares/);
    writeRecordIo(rec, idx, [{ key: 0, payload: packImageRecord({ label: 1.5 }, image) }]);
    expectInvalid(() => readInsightfaceDataset(rec, idx), /image key 0 .* has label 1\.5: expected a non-negative integer identity/);
    writeRecordIo(rec, idx, [{ key: 0, payload: packImageRecord({ label: [0.5, 3] }, bytes()) }]);
    expectInvalid(() => readInsightfaceDataset(rec, idx), /record 0's header \(flag 2, label \[0\.5, 3\]\) is not insightface's/);
  });
});
