/** `npm run bench`: every benchmark, each printing its figures and ratios to a floor from the same run. */
import { benchBazelBuild } from './bazel-build.js';
import { benchExecutionLatency } from './execution-latency.js';
import { benchGrpcActionCache } from './grpc-action-cache.js';
import { benchGrpcByteStream } from './grpc-bytestream.js';
import { benchGrpcFindMissing } from './grpc-find-missing.js';
import { benchLongJobSupervision } from './long-job-supervision.js';
import { benchPostgresDispatch } from './postgres-dispatch.js';
import { benchQueueScale } from './queue-scale.js';
import { benchSoak } from './soak.js';

const benches: Record<string, () => Promise<boolean>> = {
  'execution-latency': benchExecutionLatency,
  'queue-scale': benchQueueScale,
  'grpc-action-cache': benchGrpcActionCache,
  'grpc-bytestream': benchGrpcByteStream,
  'grpc-find-missing': benchGrpcFindMissing,
  'bazel-build': benchBazelBuild,
  'postgres-dispatch': benchPostgresDispatch,
  'long-job-supervision': benchLongJobSupervision,
  soak: benchSoak,
};

const only = process.argv.slice(2);
let allMet = true;
for (const [name, run] of Object.entries(benches)) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(`\n== ${name}`);
  allMet = (await run()) && allMet;
}
console.log(allMet ? '\nall targets met' : '\nsome targets missed (see MISS above)');
