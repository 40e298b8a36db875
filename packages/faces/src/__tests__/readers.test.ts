import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeImage,
  decodeImageBytes,
  parseInsightfaceBin,
  parseUtkFaceName,
  readCfpPairs,
  readImageFolders,
  readInsightfaceBin,
  readLfwPairs,
  readUtkFace,
  requireDataPath,
} from '../index';

// These tests read the real datasets in ../shared/data (ID3_DATA_DIR); requireDataPath fails
// loudly, naming the path, when they are missing.
const tmp = () => mkdtempSync(join(tmpdir(), 'id3-faces-'));

describe('LFW pairs.txt', () => {
  it('reads the official View 2 protocol: 10 folds × (300 same + 300 different), files present', () => {
    const list = readLfwPairs(requireDataPath('lfw', 'pairs.txt'), requireDataPath('lfw', 'lfw-deepfunneled'));
    expect(list.pairs).toHaveLength(6000);
    expect(list.folds).toBe(10);
    expect(list.pairs.slice(0, 300).every((p) => p.same)).toBe(true);
    expect(list.pairs.slice(300, 600).every((p) => !p.same)).toBe(true);
    expect(list.pairs[0]).toMatchObject({ same: true, fold: 0, line: 2 });
    expect(list.pairs[0].a).toMatch(/Abel_Pacheco\/Abel_Pacheco_0001\.jpg$/);
    expect(list.pairs[0].b).toMatch(/Abel_Pacheco\/Abel_Pacheco_0004\.jpg$/);
    expect(list.pairs[600].fold).toBe(1);
    expect(list.pairs[5999].fold).toBe(9);
  });

  it('names the line of a malformed entry and of a missing image', () => {
    const dir = tmp();
    const root = requireDataPath('lfw', 'lfw-deepfunneled');
    writeFileSync(join(dir, 'pairs.txt'), '1 1\nAbel_Pacheco 1 4\nNobody_Here 1 Abel_Pacheco 2\n');
    expect(() => readLfwPairs(join(dir, 'pairs.txt'), root)).toThrow(/pairs\.txt:3: image not found: .*Nobody_Here_0001\.jpg/);
    writeFileSync(join(dir, 'pairs.txt'), '1 1\nAbel_Pacheco one 4\nAbel_Pacheco 1 Abdel_Madi_Shabneh 1\n');
    expect(() => readLfwPairs(join(dir, 'pairs.txt'), root)).toThrow(
      /pairs\.txt:2: expected 'name i j' or 'name1 i name2 j', got 'Abel_Pacheco one 4'/,
    );
    writeFileSync(join(dir, 'pairs.txt'), 'ten 300\n');
    expect(() => readLfwPairs(join(dir, 'pairs.txt'), root)).toThrow(/pairs\.txt:1: expected a header/);
  });
});

describe('CFP protocol layout (format sample)', () => {
  const root = requireDataPath('samples', 'cfp-format');

  it('FP pairs index the frontal then the profile list; folds are the splits', () => {
    const fp = readCfpPairs(root, 'FP');
    const splits = readdirSync(join(root, 'Protocol', 'Split', 'FP')).length;
    expect(fp.folds).toBe(splits);
    expect(fp.pairs.length).toBeGreaterThan(0);
    expect(fp.pairs.every((p) => /\/frontal\//.test(p.a) && /\/profile\//.test(p.b))).toBe(true);
    expect(fp.pairs.some((p) => p.same) && fp.pairs.some((p) => !p.same)).toBe(true);
    const first = readFileSync(join(root, 'Protocol', 'Split', 'FP', '01', 'same.txt'), 'utf8')
      .trim()
      .split('\n')[0];
    const [i, j] = first.split(',').map(Number);
    const F = readFileSync(join(root, 'Protocol', 'Pair_list_F.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${i} `))!
      .split(' ')[1];
    const P = readFileSync(join(root, 'Protocol', 'Pair_list_P.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${j} `))!
      .split(' ')[1];
    expect(fp.pairs[0].a.endsWith(F.replace('..', ''))).toBe(true);
    expect(fp.pairs[0].b.endsWith(P.replace('..', ''))).toBe(true);
  });

  it('FF pairs index the frontal list twice (an FF split built beside the sample, which has none)', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'Protocol', 'Split', 'FF', '01'), { recursive: true });
    for (const f of ['Pair_list_F.txt', 'Pair_list_P.txt']) copyFileSync(join(root, 'Protocol', f), join(dir, 'Protocol', f));
    symlinkSync(join(root, 'Data'), join(dir, 'Data'));
    writeFileSync(join(dir, 'Protocol', 'Split', 'FF', '01', 'same.txt'), '1,2\n');
    writeFileSync(join(dir, 'Protocol', 'Split', 'FF', '01', 'diff.txt'), '1,3\n');
    const ff = readCfpPairs(dir, 'FF');
    expect(ff.pairs.map((p) => p.same)).toEqual([true, false]);
    expect(ff.pairs.every((p) => /\/frontal\//.test(p.a) && /\/frontal\//.test(p.b))).toBe(true);
    writeFileSync(join(dir, 'Protocol', 'Split', 'FF', '01', 'diff.txt'), '1,99999\n');
    expect(() => readCfpPairs(dir, 'FF')).toThrow(/diff\.txt:1: index 99999 not in Pair_list_F\.txt/);
  });
});

describe('UTKFace', () => {
  it('parses age, gender and race from the file names', () => {
    expect(parseUtkFaceName('26_1_2_20170116174525125.jpg.chip.jpg')).toEqual({ age: 26, gender: 1, race: 2 });
    expect(parseUtkFaceName('26_1_2.jpg.chip.jpg')).toBeUndefined();
    expect(parseUtkFaceName('0_1_2_20170116174525125.jpg.chip.jpg')).toBeUndefined();
  });

  it('reads the 10,000-image subset', () => {
    const { records, rejected } = readUtkFace(requireDataPath('utkface', 'images'));
    expect(records.length + rejected.length).toBe(readdirSync(requireDataPath('utkface', 'images')).length);
    expect(records.length).toBeGreaterThanOrEqual(9900);
    expect(records.every((r) => r.age >= 1 && r.age <= 116)).toBe(true);
  });
});

describe('identity folders (ORL, PGM)', () => {
  it('reads 40 identities × 10 images, naturally sorted, and decodes PGM', async () => {
    const { images, identities } = readImageFolders(requireDataPath('orl'));
    expect(identities).toHaveLength(40);
    expect(identities.slice(0, 3)).toEqual(['s1', 's2', 's3']);
    expect(images).toHaveLength(400);
    expect(images[10]).toMatchObject({ identity: 's2', label: 1 });
    const img = await decodeImage(images[0].path);
    expect([img.width, img.height]).toEqual([92, 112]);
    expect(img.data.length).toBe(92 * 112 * 3);
    expect(img.data[0]).toBe(img.data[1]); // grey → equal channels
  });
});

describe('insightface .bin (restricted pickle reader)', () => {
  it('reads both samples (protocol 2 from Python 2, protocol 4) to the same 40 pairs of real JPEGs', async () => {
    const py2 = readInsightfaceBin(requireDataPath('samples', 'insightface-bin', 'sample-py2.bin'));
    const py3 = readInsightfaceBin(requireDataPath('samples', 'insightface-bin', 'sample-py3.bin'));
    expect(py2.images).toHaveLength(80);
    expect(py2.issame).toHaveLength(40);
    expect(py2.issame.filter(Boolean)).toHaveLength(20);
    expect(py3.issame).toEqual(py2.issame);
    expect(py3.images.every((img, i) => img.equals(py2.images[i]))).toBe(true);
    const first = await decodeImageBytes(py2.images[0], 'sample-py2.bin[0]');
    expect([first.width, first.height]).toEqual([112, 112]);
  });

  it('refuses code-executing opcodes by name and offset, never running them', () => {
    // protocol 2: GLOBAL 'os system', then a string, TUPLE1, REDUCE — the classic exploit.
    const evil = Buffer.concat([
      Buffer.from([0x80, 0x02]),
      Buffer.from('cos\nsystem\n'),
      Buffer.from([0x55, 0x02]),
      Buffer.from('id'),
      Buffer.from([0x85, 0x52, 0x2e]),
    ]);
    expect(() => parseInsightfaceBin(evil, 'evil.bin')).toThrow(/evil\.bin: refusing pickle opcode 0x63 \('c'\) at byte 2/);
  });

  it('reports truncation and wrong structure, naming the file', () => {
    const good = readFileSync(requireDataPath('samples', 'insightface-bin', 'sample-py3.bin'));
    expect(() => parseInsightfaceBin(good.subarray(0, 5000), 'cut.bin')).toThrow(/cut\.bin: truncated at byte/);
    // ([], True): a tuple whose parts are not (list of bytes, list of bool)
    expect(() => parseInsightfaceBin(Buffer.from([0x80, 0x02, 0x5d, 0x88, 0x86, 0x2e]), 'odd.bin')).toThrow(
      /odd\.bin: second element must be a list of bools/,
    );
    const dir = tmp();
    expect(() => readInsightfaceBin(join(dir, 'missing.bin'))).toThrow(/cannot read .*missing\.bin/);
  });
});

describe('image decoding errors', () => {
  it('a truncated JPEG and a non-image file fail with the file named', async () => {
    const dir = tmp();
    const jpeg = readFileSync(requireDataPath('lfw', 'lfw-deepfunneled', 'Abel_Pacheco', 'Abel_Pacheco_0001.jpg'));
    writeFileSync(join(dir, 'cut.jpg'), jpeg.subarray(0, 2000));
    writeFileSync(join(dir, 'notes.jpg'), 'this is text');
    await expect(decodeImage(join(dir, 'cut.jpg'))).rejects.toThrow(/cannot decode image .*cut\.jpg/);
    await expect(decodeImage(join(dir, 'notes.jpg'))).rejects.toThrow(/cannot decode image .*notes\.jpg/);
    await expect(decodeImage(join(dir, 'absent.jpg'))).rejects.toThrow(/cannot read image .*absent\.jpg/);
    const ok = await decodeImage(requireDataPath('lfw', 'lfw-deepfunneled', 'Abel_Pacheco', 'Abel_Pacheco_0001.jpg'));
    expect([ok.width, ok.height]).toEqual([250, 250]);
  });
});
