import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore, hashJson, readTensorFile, sha256, writeFileAtomic, writeTensorFile } from '../index';

const tmp = () => mkdtempSync(join(tmpdir(), 'id3-store-'));

describe('atomic writes and tensor files', () => {
  it('writeFileAtomic leaves no temp files and replaces content whole', () => {
    const dir = tmp();
    const p = join(dir, 'a', 'b.txt');
    writeFileAtomic(p, 'first');
    writeFileAtomic(p, 'second');
    expect(readFileSync(p, 'utf8')).toBe('second');
    expect(readdirSync(join(dir, 'a'))).toEqual(['b.txt']);
  });

  it('round-trips float32/int32 tensors with shape, meta and hash', () => {
    const dir = tmp();
    const values = Float32Array.from([1.5, -2, 3.25, 0, 1e-7, 42]);
    const header = writeTensorFile(join(dir, 'x'), 'float32', [2, 3], values, { what: 'test' });
    const back = readTensorFile(header);
    expect(back.header.shape).toEqual([2, 3]);
    expect(back.header.meta).toEqual({ what: 'test' });
    expect(Array.from(back.values)).toEqual(Array.from(values));
    const ints = readTensorFile(writeTensorFile(join(dir, 'i'), 'int32', [3], Int32Array.from([7, -1, 3])));
    expect(ints.values).toBeInstanceOf(Int32Array);
    expect(Array.from(ints.values)).toEqual([7, -1, 3]);
  });

  it('refuses a shape that the values do not fill', () => {
    expect(() => writeTensorFile(join(tmp(), 'x'), 'float32', [2, 2], new Float32Array(3))).toThrow(/do not fill shape/);
  });

  it('detects a corrupted or truncated data file, naming it', () => {
    const dir = tmp();
    const header = writeTensorFile(join(dir, 'x'), 'float32', [4], Float32Array.from([1, 2, 3, 4]));
    const data = join(dir, 'x.bin');
    const bytes = readFileSync(data);
    bytes[0] ^= 0xff;
    writeFileSync(data, bytes);
    expect(() => readTensorFile(header)).toThrow(new RegExp(`${data}: content hash does not match`));
    writeFileSync(data, bytes.subarray(0, 8));
    expect(() => readTensorFile(header)).toThrow(/8 bytes, header says \[4\] float32/);
  });
});

describe('RunStore.stageStatus', () => {
  async function recorded() {
    const store = new RunStore(tmp());
    const out = join(store.stageDir('s'), 'out.txt');
    writeFileAtomic(out, 'result');
    const record = await store.describeFile(out);
    const configHash = hashJson({ a: 1 });
    store.writeManifest({
      format: 'id3-stage-manifest/1',
      stage: 's',
      stageVersion: 1,
      configHash,
      config: { a: 1 },
      inputs: {},
      outputs: { out: record },
      metrics: { m: 1 },
      backend: 'cpu',
      startedAt: '',
      finishedAt: '',
      durationMs: 0,
    });
    return { store, out, configHash, record };
  }

  it('is current when version, config, inputs and every output hash match', async () => {
    const { store, configHash, record } = await recorded();
    expect(record).toEqual({ path: 's/out.txt', sha256: sha256('result'), bytes: 6 });
    expect((await store.stageStatus('s', { stageVersion: 1, configHash, inputs: {} })).current).toBe(true);
  });

  it('is not current for a stage without a manifest', async () => {
    const { store, configHash } = await recorded();
    expect(await store.stageStatus('other', { stageVersion: 1, configHash, inputs: {} })).toEqual({
      current: false,
      reason: 'no manifest',
    });
  });

  it('is not current after a config change, a version bump, an input change, or an output edit/removal', async () => {
    const { store, out, configHash } = await recorded();
    expect(await store.stageStatus('s', { stageVersion: 1, configHash: 'other', inputs: {} })).toEqual({
      current: false,
      reason: 'config changed',
    });
    expect((await store.stageStatus('s', { stageVersion: 2, configHash, inputs: {} })).current).toBe(false);
    expect(await store.stageStatus('s', { stageVersion: 1, configHash, inputs: { data: { path: 'x', sha256: 'y', bytes: 1 } } })).toEqual({
      current: false,
      reason: "input 'data' changed",
    });
    writeFileSync(out, 'resulT');
    expect(await store.stageStatus('s', { stageVersion: 1, configHash, inputs: {} })).toEqual({
      current: false,
      reason: "output 'out' changed (s/out.txt)",
    });
    const { rmSync } = await import('node:fs');
    rmSync(out);
    expect(await store.stageStatus('s', { stageVersion: 1, configHash, inputs: {} })).toEqual({
      current: false,
      reason: "output 'out' missing (s/out.txt)",
    });
  });

  it('logs events as JSON lines', () => {
    const store = new RunStore(tmp());
    store.logEvent('a', 'start');
    store.logEvent('a', 'complete', { durationMs: 5 });
    expect(store.readEvents().map((e) => [e.stage, e.event])).toEqual([
      ['a', 'start'],
      ['a', 'complete'],
    ]);
    expect(existsSync(join(store.root, 'events.jsonl'))).toBe(true);
  });
});

describe('a folder as an input', () => {
  it('is described by its content: a copy with new mtimes is the same input, a changed photo of the same size is not', async () => {
    const a = join(tmp(), 'photos');
    for (const [name, body] of [
      ['p1/1.jpg', 'first photo'],
      ['p1/2.jpg', 'second photo'],
      ['p2/1.jpg', 'third photo'],
    ])
      writeFileAtomic(join(a, name), body);
    const store = new RunStore(tmp());
    const original = await store.describeFile(a);
    const b = join(tmp(), 'photos');
    cpSync(a, b, { recursive: true });
    utimesSync(join(b, 'p1', '1.jpg'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const copy = await store.describeFile(b);
    expect([copy.sha256, copy.bytes]).toEqual([original.sha256, original.bytes]);
    writeFileSync(join(b, 'p1', '1.jpg'), 'First photo'); // same size, other content
    expect((await store.describeFile(b)).sha256).not.toBe(original.sha256);
  });
});
