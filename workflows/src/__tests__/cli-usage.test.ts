import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError, main } from '../cli';

// Command-line mistakes are said in one line naming the option (exit 2), never as a stack trace.
describe('id3 command-line mistakes', () => {
  const saved = process.env.ID3_STATE_DIR;
  let state: string;
  beforeAll(() => {
    state = mkdtempSync(join(tmpdir(), 'id3-cli-usage-'));
    process.env.ID3_STATE_DIR = state;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.ID3_STATE_DIR;
    else process.env.ID3_STATE_DIR = saved;
    rmSync(state, { recursive: true, force: true });
  });

  it.each([
    [['run', '--bogus'], /Unknown option '--bogus'/],
    [['run', '--profile'], /--profile/],
    [['run', '--set', 'sample.count'], /--set sample\.count: expected SECTION\.FIELD=VALUE/],
    [['stage'], /which stage/],
    [['stage', 'prepare', '--config', 'x.json'], /--config needs --run-dir/],
    [['experiment'], /which experiment/],
    [['experiment', 'table1', '--max-parallel-rows', '0'], /--max-parallel-rows: a positive integer/],
    [['experiment', 'table1', '--seed=-1'], /--seed: a non-negative integer/],
  ])('id3 %j is a usage error', async (argv, message) => {
    const failure = main(argv);
    await expect(failure).rejects.toBeInstanceOf(UsageError);
    await expect(failure).rejects.toThrow(message);
  });
});
