import { stageTimeLeft } from '../cli';
import { shardedStageFinish } from '../contracts';

const MIN = 60_000;

describe("a sharded stage's expected finish", () => {
  it('extrapolates the pace of the shards this execution ran', () => {
    // 4 shards ran in 40 min (side by side): 10 min a shard, 6 left → 60 min from now.
    expect(shardedStageFinish({ startedAtMs: 0, ran: 4, left: 6, nowMs: 40 * MIN })).toBe(100 * MIN);
  });

  it('says nothing until two shards ran: parallel shards finish together, one alone halves the pace', () => {
    expect(shardedStageFinish({ startedAtMs: 0, ran: 0, left: 6, nowMs: 5 * MIN })).toBeUndefined();
    expect(shardedStageFinish({ startedAtMs: 0, ran: 1, left: 6, nowMs: 10 * MIN })).toBeUndefined();
    expect(shardedStageFinish({ startedAtMs: 0, ran: 1, left: 6, nowMs: 10 * MIN }, 1)).toBe(70 * MIN);
  });

  it('says nothing when nothing is left or no time has passed', () => {
    expect(shardedStageFinish({ startedAtMs: 0, ran: 5, left: 0, nowMs: 10 * MIN })).toBeUndefined();
    expect(shardedStageFinish({ startedAtMs: 10 * MIN, ran: 5, left: 3, nowMs: 10 * MIN })).toBeUndefined();
  });
});

describe("id3 status's whole-stage time left", () => {
  const at = (ms: number): string => new Date(ms).toISOString();

  it('is empty without an estimate', () => {
    expect(stageTimeLeft({}, 0)).toBe('');
  });

  it('reads the finish relative to now', () => {
    expect(stageTimeLeft({ finishesAt: at(Date.UTC(2026, 11, 1, 9, 40)) }, Date.UTC(2026, 11, 1, 9, 0))).toBe(
      '; whole stage: about 40 min left',
    );
  });

  it('says when the expected finish has passed instead of a negative time', () => {
    const due = at(Date.UTC(2026, 11, 1, 9, 0));
    expect(stageTimeLeft({ finishesAt: due }, Date.UTC(2026, 11, 1, 9, 5))).toBe(`; whole stage: was expected by ${due}`);
  });
});
