/** `npm run bench`: every benchmark, each printing its figures and ratios to a floor from the same run. */
import { benchExecutionLatency } from './execution-latency.js';
import { benchQueueScale } from './queue-scale.js';

const benches: Record<string, () => Promise<boolean>> = {
  'execution-latency': benchExecutionLatency,
  'queue-scale': benchQueueScale,
};

const only = process.argv.slice(2);
let allMet = true;
for (const [name, run] of Object.entries(benches)) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(`\n== ${name}`);
  allMet = (await run()) && allMet;
}
console.log(allMet ? '\nall targets met' : '\nsome targets missed (see MISS above)');
