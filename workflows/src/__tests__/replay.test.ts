import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

// A Table 1 experiment runs for days while the code changes under it; when a worker restarts, it
// replays each open execution's history with the new workflow code, and any change in the
// commands it issues (another activity, another order) stalls that execution for good. These are
// histories of real executions, saved mid-run (scripts/export-workflow-history.ts): the experiment
// workflow, one of its pipeline children, one stage and one sharded stage (sampling: shards queued
// side by side, a worker restart mid-stage), each replayed with today's code.
jest.setTimeout(120_000);

const dir = join(__dirname, 'histories');
// Each file is named by its workflow id: child ids derive from it, so the replay needs the same one.
const histories = readdirSync(dir)
  .filter((f) => f.endsWith('.bin'))
  .map((file) => ({
    workflowId: file.replace(/\.bin$/, ''),
    history: temporal.api.history.v1.History.decode(readFileSync(join(dir, file))),
  }));
const typeOf = (h: temporal.api.history.v1.IHistory): string | null | undefined =>
  h.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name;

describe('workflow code replays the saved histories of real executions', () => {
  it('has histories of the three workflow types, each mid-run', () => {
    expect(histories.map((h) => typeOf(h.history)).sort()).toEqual(['experiment', 'pipeline', 'stage', 'stage']);
    for (const { history } of histories) expect(history.events?.length).toBeGreaterThan(10);
  });

  it.each(histories.map((h) => [h.workflowId, h.history] as const))(
    '%s replays without a nondeterminism error',
    async (workflowId, history) => {
      await expect(
        Worker.runReplayHistory({ workflowsPath: require.resolve('../workflows') }, history, workflowId),
      ).resolves.toBeUndefined();
    },
  );
});
