/** `npm run bench`: every benchmark, each printing its figures and ratios to a floor from the same run. */
import { benchAutoscaleSimulation } from './autoscale-simulation.js';
import { benchBazelBuild } from './bazel-build.js';
import { benchByteStreamDoors } from './bytestream-doors.js';
import { benchDashboard } from './dashboard.js';
import { benchCompareCalibration } from './compare-calibration.js';
import { benchCliStart } from './cli-start.js';
import { benchExecutionLatency } from './execution-latency.js';
import { benchGrpcActionCache } from './grpc-action-cache.js';
import { benchGrpcByteStream } from './grpc-bytestream.js';
import { benchGrpcCompression } from './grpc-compression.js';
import { benchCasEviction } from './cas-eviction.js';
import { benchGrpcFindMissing } from './grpc-find-missing.js';
import { benchLongJobSupervision } from './long-job-supervision.js';
import { benchMetricsCost } from './metrics-cost.js';
import { benchLogLatency, benchLogThroughput } from './live-logs.js';
import { benchPostgresDispatch } from './postgres-dispatch.js';
import { benchQueueScale } from './queue-scale.js';
import { benchRetentionBlobs } from './retention-blobs.js';
import { benchSoak, benchSoakCost } from './soak.js';

const benches: Record<string, () => Promise<boolean>> = {
  'execution-latency': benchExecutionLatency,
  'queue-scale': benchQueueScale,
  'grpc-action-cache': benchGrpcActionCache,
  'grpc-bytestream': benchGrpcByteStream,
  'bytestream-doors': benchByteStreamDoors,
  'grpc-find-missing': benchGrpcFindMissing,
  'grpc-compression': benchGrpcCompression,
  'cas-eviction': benchCasEviction,
  'retention-blobs': benchRetentionBlobs,
  'bazel-build': benchBazelBuild,
  'postgres-dispatch': benchPostgresDispatch,
  'long-job-supervision': benchLongJobSupervision,
  dashboard: benchDashboard,
  'compare-calibration': benchCompareCalibration,
  'metrics-cost': benchMetricsCost,
  'log-latency': benchLogLatency,
  'log-throughput': benchLogThroughput,
  'cli-start': benchCliStart,
  soak: benchSoak,
  'soak-cost': benchSoakCost,
  'autoscale-simulation': benchAutoscaleSimulation,
};

const only = process.argv.slice(2);
let allMet = true;
for (const [name, run] of Object.entries(benches)) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(`\n== ${name}`);
  allMet = (await run()) && allMet;
}
console.log(allMet ? '\nall targets met' : '\nsome targets missed (see MISS above)');
